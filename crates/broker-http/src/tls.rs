//! HTTPS on the server's one port: the certificate and key ([`Tls`]), reloaded without dropping
//! a connection, and each connection's handshake.
//!
//! rustls serves TLS 1.2 and 1.3 with its safe defaults (cipher suites, key exchange groups), on
//! the `ring` provider. The certificate of each handshake comes from [`Current`], a
//! `ResolvesServerCert` that holds the certificate chain and key of the moment: a reload replaces
//! them, so that the handshakes that follow get the new certificate, while the connections
//! already open, event streams included, keep the session they have. A reload that fails (a
//! file missing or unreadable, not PEM, a key that is not the certificate's) changes nothing.
//!
//! [`Tls::reload`] reloads now (broker-server calls it on SIGHUP); [`watch`], which
//! [`serve`](crate::serve) runs beside the accept loop, reloads when either file changes. It
//! compares the files' modification time, length and inode every [`WATCH_INTERVAL`], so a file
//! replaced by a rename, as ACME clients replace them, counts as changed, and so does one
//! behind a symbolic link that now points elsewhere.
//!
//! ALPN offers what [`alpn_protocols`] lists, `h2` first and `http/1.1`: the caller serves the
//! connection by the protocol the handshake settled on, [`alpn_protocol`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::metrics::CloseCause;

/// How often [`watch`] looks at the certificate and key files for a change.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The application protocols offered in the handshake, most preferred first: `http/1.1` alone,
/// since every connection is served as HTTP/1.1. A client that offers only others is refused
/// in the handshake, as RFC 7301 asks; one that offers none is served.
pub(crate) fn alpn_protocols() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// The application protocol the handshake of `stream` settled on, if the client offered any.
pub(crate) fn alpn_protocol(stream: &TlsStream<TcpStream>) -> Option<&[u8]> {
    stream.get_ref().1.alpn_protocol()
}

/// Why a certificate and key could not be loaded: each message names the file and what is
/// wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file is not PEM, or holds a malformed section.
    #[error("{} is not a valid PEM file: {reason}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser found wrong.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("{} holds no certificate (a PEM `CERTIFICATE` section)", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "{} holds no private key (a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` \
         section)",
        .path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate or the key is of a kind rustls cannot use, or is malformed.
    #[error("cannot use {}: {reason}", .path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What rustls found wrong.
        reason: String,
    },
    /// The key is not the one of the certificate (the first of the chain).
    #[error("the key in {} is not the key of the certificate in {}", .key.display(), .cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The certificate and key a server serves HTTPS with, read from two PEM files, and reloaded
/// from them without a restart: hand it to [`App::with_tls`](crate::App::with_tls).
///
/// The certificate file holds the server's certificate, followed by the intermediate
/// certificates of its chain, if any; the key file holds its private key, PKCS#8, PKCS#1 (RSA)
/// or SEC1 (EC). Clones share everything: a reload through one is seen by all.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_path", &self.inner.cert_path)
            .field("key_path", &self.inner.key_path)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate chain from `cert` and its private key from `key`, both PEM, and
    /// checks that they belong together.
    ///
    /// Reads the files with blocking calls: call it at start-up, or on a blocking thread.
    pub fn from_pem_files(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Result<Tls, TlsError> {
        let (cert_path, key_path) = (cert.into(), key.into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = load(&cert_path, &key_path, &provider)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(certified))));
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring's default provider has cipher suites for TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn_protocols();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Ok(Tls { inner: Arc::new(Inner { cert_path, key_path, provider, current, acceptor }) })
    }

    /// Reads both files again and, if they hold a certificate and its key, serves them from the
    /// next handshake on; connections already open are left as they are. On an error, the
    /// certificate served so far stays.
    ///
    /// Reads the files with blocking calls: call it on a blocking thread
    /// (`tokio::task::spawn_blocking`).
    pub fn reload(&self) -> Result<(), TlsError> {
        let inner = &self.inner;
        let certified = load(&inner.cert_path, &inner.key_path, &inner.provider)?;
        inner.current.replace(Arc::new(certified));
        Ok(())
    }

    /// [`reload`](Tls::reload)s on tokio's blocking pool and logs the outcome, led by `cause`
    /// (what asked for the reload); a reload that fails is a warning, and the certificate served
    /// so far stays. `false` when the runtime is shutting down and nothing was reloaded.
    pub async fn reload_and_log(&self, cause: &str) -> bool {
        let reloading = self.clone();
        match tokio::task::spawn_blocking(move || reloading.reload()).await {
            Ok(Ok(())) => tracing::info!(
                cert = %self.cert_path().display(),
                "{cause}: the TLS certificate is reloaded, new connections get it"
            ),
            Ok(Err(error)) => tracing::warn!(
                "{cause}: the TLS certificate cannot be loaded; the previous one stays: {}",
                chain(&error)
            ),
            Err(_) => return false,
        }
        true
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.inner.cert_path
    }

    /// The key file.
    pub fn key_path(&self) -> &Path {
        &self.inner.key_path
    }

    /// Runs the handshake of `stream` within `deadline`. A handshake that fails or takes
    /// longer is logged at debug level and comes back as the close cause.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        deadline: Duration,
    ) -> Result<TlsStream<TcpStream>, CloseCause> {
        match tokio::time::timeout(deadline, self.inner.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                Err(CloseCause::TlsHandshake)
            }
            Err(_) => {
                tracing::debug!(?deadline, "TLS handshake unfinished at its deadline");
                Err(CloseCause::TlsHandshake)
            }
        }
    }
}

/// The certificate chain and key served, which a reload replaces.
///
/// A lock rather than anything cleverer: it is read once per handshake, for as long as an `Arc`
/// takes to clone, and written once per reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl Current {
    fn replace(&self, certified: Arc<CertifiedKey>) {
        // A panic while the lock was held could only have been in an `Arc` assignment, which
        // leaves the value whole: a poisoned lock is as good as any.
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = certified;
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

/// Reads the chain in `cert_path` and the key in `key_path`, and checks that the key is the
/// certificate's.
fn load(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
    };
    let pem_error = |path: &Path, error: pem::Error| TlsError::Pem {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(cert_path, error))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path.to_owned() });
    }
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoKey { path: key_path.to_owned() },
        error => pem_error(key_path, error),
    })?;
    let key = provider.key_provider.load_private_key(key).map_err(|error| TlsError::Unusable {
        path: key_path.to_owned(),
        reason: error.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        // A key whose public half the provider cannot tell is taken on trust, as rustls does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch { cert: cert_path.to_owned(), key: key_path.to_owned() })
        }
        Err(error) => {
            Err(TlsError::Unusable { path: cert_path.to_owned(), reason: error.to_string() })
        }
    }
}

/// What tells a file's change: its modification time, length and inode, read through symbolic
/// links; `None` for a file that cannot be looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: (u64, u64),
}

/// The stamps of the certificate and key files of `tls`.
fn stamps(tls: &Tls) -> (Option<Stamp>, Option<Stamp>) {
    (stamp(tls.cert_path()), stamp(tls.key_path()))
}

fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt;
        (metadata.dev(), metadata.ino())
    };
    #[cfg(not(unix))]
    let inode = (0, 0);
    Some(Stamp { modified: metadata.modified().ok(), len: metadata.len(), inode })
}

/// Reloads `tls` whenever its certificate or key file changes, looking every
/// [`WATCH_INTERVAL`]; never ends. Every reload is logged, a failed one as a warning.
///
/// The files are first looked at when this is called, not when the future first runs, so that
/// a change made as soon as the server is up is not taken for the files it started with. A file
/// caught half-written fails to load, or loads with a key that does not match; the change that
/// completes it is seen at the next look, and loaded then.
pub(crate) fn watch(tls: Tls) -> impl Future<Output = ()> + Send {
    // Two `stat`s on the calling thread, once, at start-up; later looks go to the blocking pool.
    let mut seen = stamps(&tls);
    async move {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let looking = tls.clone();
            // An error means the runtime is shutting down.
            let Ok(now) = tokio::task::spawn_blocking(move || stamps(&looking)).await else {
                return;
            };
            if now == seen {
                continue;
            }
            seen = now;
            if !tls.reload_and_log("the certificate's files changed").await {
                return;
            }
        }
    }
}

/// `error` and its sources, separated by colons, as `{:#}` prints an `anyhow` chain.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
