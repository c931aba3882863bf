//! [`Pki`]: certificates for a server on 127.0.0.1, signed by a root and an intermediate authority
//! of the test's own, and [`Https`], a client that trusts that root alone: hyper over
//! tokio-rustls, one connection per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, BodyStream, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Server;

/// How long a connection, a response or a body may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// A root authority, which clients trust, and an intermediate one it signed, which signs the
/// servers' certificates: a server must send its whole chain to be trusted.
pub struct Pki {
    root: CertificateDer<'static>,
    intermediate: Issuer<'static, KeyPair>,
    intermediate_pem: String,
}

/// A server certificate named after its holder, its chain and its key.
pub struct Leaf {
    /// The certificate, then the intermediate one, in PEM.
    pub chain: String,
    /// The private key, PKCS#8 PEM.
    pub key: String,
    /// The server certificate alone, as the server presents it.
    pub der: Vec<u8>,
}

impl Pki {
    /// A new root and intermediate.
    pub fn new() -> Pki {
        let root_key = KeyPair::generate().expect("a key");
        let root_params = authority("broker e2e root");
        let root = root_params.self_signed(&root_key).expect("the root certificate");
        let root_issuer = Issuer::new(root_params, root_key);
        let intermediate_key = KeyPair::generate().expect("a key");
        let intermediate_params = authority("broker e2e intermediate");
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &root_issuer)
            .expect("the intermediate certificate");
        Pki {
            root: root.der().clone(),
            intermediate_pem: intermediate.pem(),
            intermediate: Issuer::new(intermediate_params, intermediate_key),
        }
    }

    /// A certificate for `localhost` and 127.0.0.1 whose common name is `name`.
    pub fn leaf(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().expect("a key");
        let names = ["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(names).expect("names");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.intermediate).expect("the certificate");
        Leaf {
            chain: format!("{}{}", cert.pem(), self.intermediate_pem),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// An HTTPS client of `server` that trusts the root alone.
    pub fn client(&self, server: &Server) -> Https {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.clone()).expect("the root is a certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring has TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every connection makes a whole handshake: a resumed session reports the certificate
        // of the session it resumes, not the one served now.
        config.resumption = rustls::client::Resumption::disabled();
        Https { connector: TlsConnector::from(Arc::new(config)), addr: server.addr() }
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

fn authority(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// An HTTPS client of one server: each request on a connection of its own, so that each makes a
/// handshake and sees the certificate served at that moment.
pub struct Https {
    connector: TlsConnector,
    addr: SocketAddr,
}

/// A response over HTTPS, read whole, and the certificate its connection was made with.
#[derive(Debug)]
pub struct HttpsReply {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
    /// The server certificate, DER.
    pub certificate: Vec<u8>,
}

impl HttpsReply {
    /// The first value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().expect("a header value is text"))
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("the body is not JSON ({error}): {:?}", self.body))
    }
}

impl Https {
    /// Sends `method path` with `body` (JSON, if any) on a new connection, and returns the
    /// response, its body still to read, and the certificate the server presented.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> (Response<Incoming>, Vec<u8>) {
        let exchange = async {
            let tcp = TcpStream::connect(self.addr).await.expect("connect");
            let name = ServerName::try_from("localhost").expect("a name");
            let tls = self.connector.connect(name, tcp).await.expect("the TLS handshake");
            let certificate =
                tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec();
            let (mut sender, connection) =
                http1::handshake(TokioIo::new(tls)).await.expect("an HTTP/1.1 connection");
            tokio::spawn(connection);
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(HOST, format!("localhost:{}", self.addr.port()));
            if body.is_some() {
                request = request.header(CONTENT_TYPE, "application/json");
            }
            let body = Full::new(Bytes::from(body.unwrap_or_default().to_owned()));
            let request = request.body(body).expect("a request");
            let response = sender.send_request(request).await.expect("a response");
            (response, certificate)
        };
        tokio::time::timeout(PATIENCE, exchange).await.expect("an answer in time")
    }

    /// `method path` with `body`, read whole.
    pub async fn request(&self, method: Method, path: &str, body: Option<&str>) -> HttpsReply {
        let (response, certificate) = self.send(method, path, body).await;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(PATIENCE, body.collect()).await.expect("a body in time");
        let body = body.expect("a whole body").to_bytes();
        let body = String::from_utf8(body.to_vec()).expect("a UTF-8 body");
        HttpsReply { status: parts.status.as_u16(), headers: parts.headers, body, certificate }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> HttpsReply {
        self.request(Method::GET, path, None).await
    }

    /// Inserts `data` as a version of `event`, and checks it was stored.
    pub async fn insert(&self, event: &str, data: Value) -> HttpsReply {
        let body = json!({ "event": event, "data": data }).to_string();
        let reply = self.request(Method::POST, "/insert", Some(&body)).await;
        assert_eq!(reply.status, 201, "insert {body}: {reply:?}");
        reply
    }

    /// `GET /events`: the event stream, as a standard parser reads it, which skips the blocks
    /// without data (`retry:` and the snapshot comment). The subscription is live when this
    /// returns: the server sends the head once it is.
    pub async fn events(&self) -> impl Stream<Item = Event> + Unpin + use<> {
        let (response, _) = self.send(Method::GET, "/events", None).await;
        assert_eq!(response.status(), 200, "GET /events: {response:?}");
        let chunks = BodyStream::new(response.into_body()).filter_map(|frame| {
            let data = frame.expect("the stream goes on").into_data().ok();
            std::future::ready(data.map(Ok::<Bytes, Infallible>))
        });
        Box::pin(chunks.eventsource().map(|event| event.expect("an SSE event")))
    }
}

impl Leaf {
    /// Writes the chain to `cert` and the key to `key`, each replacing its file by a rename, as
    /// ACME clients do.
    pub fn install(&self, cert: &Path, key: &Path) {
        replace_file(cert, &self.chain);
        replace_file(key, &self.key);
    }
}

/// Replaces `path` with `contents` by a rename.
pub fn replace_file(path: &Path, contents: &str) {
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    std::fs::write(&partial, contents).expect("write");
    std::fs::rename(&partial, path).expect("rename");
}
