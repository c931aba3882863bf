//! The HTTPS flags: `--tls-cert` and `--tls-key`, which make the server serve HTTPS on its port,
//! and `--hsts`, the policy it then sends browsers.

use std::path::PathBuf;
use std::time::Duration;

use broker_http::Tls;

use crate::Error;

/// The certificate the server serves HTTPS with, and its HSTS policy.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS (TLS 1.2 and 1.3), not plain HTTP, with the certificate in this PEM file:
    /// the server's certificate first, then the intermediate ones of its chain. Needs
    /// --tls-key. Both files are read again on SIGHUP and whenever either changes (a renewal
    /// that replaces them, by a rename or in place): new connections get the new certificate,
    /// open ones and their event streams go on as they were, and a pair that does not load is
    /// logged and leaves the certificate served as it is.
    #[arg(long, env = "BROKER_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert's certificate, a PEM file: PKCS#8 (`PRIVATE KEY`),
    /// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    #[arg(long, env = "BROKER_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Send `Strict-Transport-Security: max-age=MAX_AGE` with every HTTPS response, such as
    /// `180d` or `1year`: browsers then reach this host over HTTPS only, for that long after
    /// each response. Start short: a browser that saw it refuses plain HTTP here until it
    /// expires. `0s` tells browsers to forget the policy. Needs --tls-cert.
    #[arg(long, env = "BROKER_HSTS", value_name = "MAX_AGE")]
    pub hsts: Option<humantime::Duration>,
}

/// What the HTTPS flags come to: the certificate, loaded, and the HSTS policy.
#[derive(Debug, Default)]
pub(crate) struct Https {
    pub(crate) tls: Option<Tls>,
    pub(crate) hsts: Option<Duration>,
}

impl TlsArgs {
    /// Checks the flags and loads the certificate and key; the error names the flag missing, or
    /// the file that does not load and why.
    pub(crate) fn load(self) -> Result<Https, Error> {
        let TlsArgs { tls_cert, tls_key, hsts } = self;
        let invalid = |message: &str| Err(Error::Config(message.into()));
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Tls::from_pem_files(cert, key).map_err(Error::Tls)?,
            (Some(_), None) => {
                return invalid(
                    "--tls-cert needs --tls-key (or BROKER_TLS_KEY), the file of the \
                     certificate's private key",
                );
            }
            (None, Some(_)) => {
                return invalid(
                    "--tls-key needs --tls-cert (or BROKER_TLS_CERT), the file of the \
                     certificate chain",
                );
            }
            (None, None) if hsts.is_some() => {
                return invalid(
                    "--hsts needs --tls-cert and --tls-key: the policy is sent over HTTPS \
                     only; behind a proxy that terminates TLS, have the proxy send it",
                );
            }
            (None, None) => return Ok(Https::default()),
        };
        Ok(Https { tls: Some(tls), hsts: hsts.map(Into::into) })
    }
}
