//! HTTPS over real loopback sockets (`loopback.rs`): requests, inserts and event streams over
//! TLS, HSTS, the versions and deadlines of the handshake, the refusal of a connection over the
//! limit, loading the files and reloading them under open connections. Certificates are made
//! here, by a root and an intermediate authority of the test's own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_core::{Broker, Config};
use broker_storage::MemoryStorage;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Tls, TlsError};
use crate::loopback::{Client, PATIENCE, Server};
use crate::{App, HttpConfig};

/// A root authority, which clients trust, and an intermediate one it signed, which signs the
/// servers' certificates: a server must send its chain for a client to trust it.
struct Pki {
    root: CertificateDer<'static>,
    intermediate: Issuer<'static, KeyPair>,
    intermediate_pem: String,
}

/// A server certificate chain and its key, in PEM, and the server certificate alone.
struct Leaf {
    chain: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let root_key = KeyPair::generate().expect("a key");
        let root_params = authority("broker test root");
        let root = root_params.self_signed(&root_key).expect("the root certificate");
        let root_issuer = Issuer::new(root_params, root_key);
        let intermediate_key = KeyPair::generate().expect("a key");
        let intermediate_params = authority("broker test intermediate");
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &root_issuer)
            .expect("the intermediate certificate");
        Pki {
            root: root.der().clone(),
            intermediate_pem: intermediate.pem(),
            intermediate: Issuer::new(intermediate_params, intermediate_key),
        }
    }

    /// A certificate for `localhost` and 127.0.0.1 named `name`, with its chain.
    fn leaf(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("names");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.intermediate).expect("the certificate");
        Leaf {
            chain: format!("{}{}", cert.pem(), self.intermediate_pem),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client that trusts the root, and offers `http/1.1` alone in ALPN.
    fn connector(&self) -> TlsConnector {
        self.connector_offering(&[b"http/1.1"])
    }

    /// A client that trusts the root, and offers `protocols` in ALPN (browsers offer `h2` and
    /// `http/1.1`).
    fn connector_offering(&self, protocols: &[&[u8]]) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.clone()).expect("the root is a certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring has TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = protocols.iter().map(|protocol| protocol.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

fn authority(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// The certificate and key files of a test, in a directory of their own.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files { dir: tempfile::tempdir().expect("a temporary directory") }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Writes `leaf` over the files, each replaced by a rename, as ACME clients do.
    fn write(&self, leaf: &Leaf) {
        replace(&self.cert(), &leaf.chain);
        replace(&self.key(), &leaf.key);
    }

    fn tls(&self) -> Tls {
        Tls::from_pem_files(self.cert(), self.key()).expect("the files load")
    }
}

fn replace(path: &Path, contents: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents).expect("write");
    std::fs::rename(&partial, path).expect("rename");
}

/// A server on the in-memory backend serving HTTPS with `tls`.
async fn serve(config: HttpConfig, tls: &Tls) -> Server {
    let broker = Broker::open(MemoryStorage::new(), Config::default()).await.expect("open");
    Server::serve(App::new(broker, config).with_tls(tls.clone())).await
}

/// A TLS connection to `server`, the handshake done.
async fn connect(server: &Server, pki: &Pki) -> Client<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("a name");
    let handshake = pki.connector().connect(name, tcp);
    let stream = tokio::time::timeout(PATIENCE, handshake)
        .await
        .expect("a handshake in time")
        .expect("the handshake succeeds");
    Client::over(stream)
}

/// The certificate the server presented on `client`'s connection.
fn presented(client: &Client<TlsStream<TcpStream>>) -> CertificateDer<'static> {
    let certs = client.stream.get_ref().1.peer_certificates().expect("the server's chain");
    certs[0].clone().into_owned()
}

fn insert(event: &str) -> Vec<u8> {
    let body = format!(r#"{{"event":"{event}","data":{{"n":1}}}}"#);
    format!(
        "POST /insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const EVENTS: &[u8] = b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// Inserts `event` on a connection of its own, and checks it was stored.
async fn insert_over_tls(server: &Server, pki: &Pki, event: &str) {
    let mut client = connect(server, pki).await;
    client.send(&insert(event)).await;
    let reply = client.reply().await.expect("an answer");
    assert_eq!(reply.status, 201, "{reply:?}");
}

/// A client that offers `h2` as browsers do gets HTTP/2 over TLS, and its requests are answered.
#[tokio::test]
async fn a_client_that_offers_h2_is_served_http2() {
    let (pki, files) = (Pki::new(), Files::new());
    files.write(&pki.leaf("a"));
    let server = serve(HttpConfig::default(), &files.tls()).await;
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("a name");
    let connector = pki.connector_offering(&[b"h2", b"http/1.1"]);
    let stream = connector.connect(name, tcp).await.expect("the handshake succeeds");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "h2 is chosen first");
    let (mut client, connection) = h2::client::handshake(stream).await.expect("an h2 handshake");
    tokio::spawn(connection);
    let request = http::Request::get("https://localhost/healthz").body(()).expect("a request");
    let (response, _) = client.send_request(request, true).expect("send the request");
    let response = tokio::time::timeout(PATIENCE, response).await.expect("in time").expect("ok");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
}

#[tokio::test]
async fn requests_over_tls_are_answered_on_every_path() {
    let (pki, files) = (Pki::new(), Files::new());
    files.write(&pki.leaf("a"));
    let tls = files.tls();
    let server = serve(HttpConfig::default(), &tls).await;
    let mut client = connect(&server, &pki).await;
    assert_eq!(client.stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Inserts one after another, served by the keep-alive loop, then a request for hyper on the
    // same connection.
    for id in 1..=3 {
        client.send(&insert("a")).await;
        let reply = client.reply().await.expect("an answer");
        assert_eq!((reply.status, reply.json()["id"].as_u64()), (201, Some(id)), "{reply:?}");
    }
    client.send(HEALTHZ).await;
    let health = client.reply().await.expect("an answer");
    assert_eq!((health.status, health.json()["last_id"].as_u64()), (200, Some(3)), "{health:?}");
    // hyper from the first request on.
    let mut client = connect(&server, &pki).await;
    client.send(b"GET /audit/a?limit=10 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let audit = client.reply().await.expect("an answer");
    assert_eq!(audit.status, 200, "{audit:?}");
    assert_eq!(audit.json().as_array().map(Vec::len), Some(3), "{audit:?}");
}

#[tokio::test]
async fn an_event_stream_over_tls_receives_live_inserts() {
    let (pki, files) = (Pki::new(), Files::new());
    files.write(&pki.leaf("a"));
    let server = serve(HttpConfig::default(), &files.tls()).await;
    let mut stream = connect(&server, &pki).await;
    stream.send(EVENTS).await;
    let head = stream.read_until(": snapshot").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    insert_over_tls(&server, &pki, "live").await;
    let frame = stream.read_until("data: {\"n\":1}").await;
    assert!(frame.contains("event: live"), "{frame}");
}

#[tokio::test]
async fn an_event_stream_over_tls_that_is_not_read_is_closed_at_the_write_timeout() {
    let (pki, files) = (Pki::new(), Files::new());
    files.write(&pki.leaf("a"));
    let config = HttpConfig { write_timeout: Duration::from_secs(1), ..HttpConfig::default() };
    let server = serve(config, &files.tls()).await;
    let mut stream = connect(&server, &pki).await;
    stream.send(EVENTS).await;
    stream.read_until(": snapshot").await;
    // More than the socket buffers on both sides hold, never read.
    let data = "x".repeat(512 * 1024);
    let mut client = connect(&server, &pki).await;
    for _ in 0..40 {
        let body = format!(r#"{{"event":"big","data":"{data}"}}"#);
        let head = format!(
            "POST /insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        client.send(&[head.as_bytes(), body.as_bytes()].concat()).await;
        assert_eq!(client.reply().await.expect("an answer").status, 201);
    }
    let started = Instant::now();
    loop {
        client.send(HEALTHZ).await;
        let health = client.reply().await.expect("an answer");
        if health.json()["subscribers"] == 0 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the stream is still open: {health:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn hsts_is_sent_over_tls_only_and_only_when_asked_for() {
    let (pki, files) = (Pki::new(), Files::new());
    files.write(&pki.leaf("a"));
    let tls = files.tls();
    let hsts = HttpConfig { hsts: Some(Duration::from_secs(15_552_000)), ..HttpConfig::default() };
    // Over TLS with a policy: on every answer, errors included.
    let server = serve(hsts.clone(), &tls).await;
    let mut client = connect(&server, &pki).await;
    for request in [HEALTHZ, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"] {
        client.send(request).await;
        let reply = client.reply().await.expect("an answer");
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=15552000"),
            "{reply:?}"
        );
    }
    // The event stream, written by the direct path.
    let mut stream = connect(&server, &pki).await;
    stream.send(EVENTS).await;
    let head = stream.read_until(": snapshot").await;
    assert!(head.contains("strict-transport-security: max-age=15552000"), "{head}");
    // Inserts on the publishers' loop, answered from their buffered bytes, and an error there.
    let mut publisher = connect(&server, &pki).await;
    let refused =
        String::from_utf8(insert("b")).expect("ASCII").replace("application/json", "text/plain");
    for (request, status) in [(insert("a"), 201), (refused.into_bytes(), 415)] {
        publisher.send(&request).await;
        let reply = publisher.reply().await.expect("an answer");
        assert_eq!(reply.status, status, "{reply:?}");
        let policy = reply.header("strict-transport-security");
        assert_eq!(policy, Some("max-age=15552000"), "{reply:?}");
    }
    // Over TLS without a policy, and over plain HTTP with one: never.
    let unasked = serve(HttpConfig::default(), &tls).await;
    let mut client = connect(&unasked, &pki).await;
    client.send(HEALTHZ).await;
    let reply = client.reply().await.expect("an answer");
    assert_eq!(reply.header("strict-transport-security"), None, "{reply:?}");
    let plain = Server::start(hsts).await;
    let mut client = plain.connect().await;
    client.send(HEALTHZ).await;
    let reply = client.reply().await.expect("an answer");
    assert_eq!(reply.header("strict-transport-security"), None, "{reply:?}");
}

/// A ClientHello offering `version` and nothing newer (no `supported_versions` extension), with
/// what rustls needs to answer it otherwise: an ECDSA suite, signature algorithms, a group.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = version.to_vec();
    body.extend([7; 32]); // random
    body.push(0); // no session id
    body.extend([0, 4, 0xc0, 0x2b, 0xc0, 0x09]); // ECDHE-ECDSA with AES-128-GCM, or -CBC-SHA
    body.extend([1, 0]); // null compression
    let extensions = [
        &[0x00, 0x0d, 0, 4, 0, 2, 0x04, 0x03][..], // signature algorithms: ECDSA P-256 SHA-256
        &[0x00, 0x0a, 0, 4, 0, 2, 0x00, 0x17][..], // supported groups: P-256
        &[0x00, 0x0b, 0, 2, 1, 0][..],             // EC point formats: uncompressed
    ]
    .concat();
    body.extend(u16::try_from(extensions.len()).expect("short").to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![1, 0];
    handshake.extend(u16::try_from(body.len()).expect("short").to_be_bytes());
    handshake.extend(body);
    let mut record = vec![0x16, 3, 1];
    record.extend(u16::try_from(handshake.len()).expect("short").to_be_bytes());
    record.extend(handshake);
    record
}

/// What the server answers `hello` with: the first record's content type and, for an alert,
/// its description.
async fn answer_to(server: &Server, hello: &[u8]) -> (u8, Option<u8>) {
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(hello).await.expect("send");
    let mut header = [0; 5];
    tokio::time::timeout(PATIENCE, tcp.read_exact(&mut header))
        .await
        .expect("in time")
        .expect("an answer");
    let kind = header[0];
    if kind != 0x15 {
        return (kind, None);
    }
    let mut alert = [0; 2];
    tcp.read_exact(&mut alert).await.expect("the alert");
    (kind, Some(alert[1]))
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_served_and_older_versions_refused() {
    const HANDSHAKE: u8 = 0x16;
    const ALERT: u8 = 0x15;
    const PROTOCOL_VERSION: u8 = 70;
    let (pki, files) = (Pki::new(), Files::new());
    files.write(&pki.leaf("a"));
    let server = serve(HttpConfig::default(), &files.tls()).await;
    // The same hello is answered with a ServerHello as TLS 1.2, with an alert as 1.1 or 1.0.
    assert_eq!(answer_to(&server, &client_hello([3, 3])).await, (HANDSHAKE, None));
    for old in [[3, 2], [3, 1]] {
        let answer = answer_to(&server, &client_hello(old)).await;
        assert_eq!(answer, (ALERT, Some(PROTOCOL_VERSION)), "version {old:?}");
    }
    // rustls's client speaks 1.3 by default.
    let client = connect(&server, &pki).await;
    let version = client.stream.get_ref().1.protocol_version();
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn a_handshake_that_never_comes_or_fails_closes_the_connection() {
    let (pki, files) = (Pki::new(), Files::new());
    files.write(&pki.leaf("a"));
    let config =
        HttpConfig { header_read_timeout: Duration::from_millis(500), ..HttpConfig::default() };
    let server = serve(config, &files.tls()).await;
    // Silence: closed at the header timeout.
    let mut silent = server.connect().await;
    let waited = silent.closed().await;
    assert!(waited >= Duration::from_millis(400), "closed after {waited:?}");
    // Plain HTTP to the HTTPS port: closed at once, with nothing said in HTTP.
    let mut plain = server.connect().await;
    plain.send(HEALTHZ).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, plain.stream.read_to_end(&mut answer)).await;
    // Closed, cleanly or by a reset; whatever came before, if anything, is a TLS alert.
    let _ = read.expect("closed in time");
    assert!(!answer.starts_with(b"HTTP"), "{:?}", String::from_utf8_lossy(&answer));
    // The server serves on.
    let mut client = connect(&server, &pki).await;
    client.send(HEALTHZ).await;
    assert_eq!(client.reply().await.expect("an answer").status, 200);
}

#[tokio::test]
async fn a_connection_over_the_limit_is_refused_over_tls() {
    let (pki, files) = (Pki::new(), Files::new());
    files.write(&pki.leaf("a"));
    let mut config = HttpConfig::default();
    config.limit_connections(1);
    let server = serve(config, &files.tls()).await;
    let mut held = connect(&server, &pki).await;
    held.send(EVENTS).await;
    held.read_until(": snapshot").await;
    let mut refused = connect(&server, &pki).await;
    refused.send(HEALTHZ).await;
    let reply = refused.reply().await.expect("an answer");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.header("retry-after").is_some(), "{reply:?}");
}

#[tokio::test]
async fn a_reload_serves_new_connections_and_leaves_open_ones_alone() {
    let (pki, files) = (Pki::new(), Files::new());
    let (a, b) = (pki.leaf("a"), pki.leaf("b"));
    files.write(&a);
    let tls = files.tls();
    let server = serve(HttpConfig::default(), &tls).await;
    let mut stream = connect(&server, &pki).await;
    assert_eq!(presented(&stream), a.der);
    stream.send(EVENTS).await;
    stream.read_until(": snapshot").await;

    files.write(&b);
    tls.reload().expect("the new files load");
    let client = connect(&server, &pki).await;
    assert_eq!(presented(&client), b.der, "a new connection gets the new certificate");
    insert_over_tls(&server, &pki, "after").await;
    let frame = stream.read_until("event: after").await;
    assert!(frame.contains("data: {\"n\":1}"), "{frame}");

    // A key of another certificate, then a file that is not PEM: refused, and B stays.
    replace(&files.key(), &a.key);
    let error = tls.reload().expect_err("a key of another certificate");
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");
    replace(&files.cert(), "-----BEGIN CERTIFICATE-----\nnot base64!\n");
    let error = tls.reload().expect_err("a broken file");
    assert!(matches!(error, TlsError::Pem { .. }), "{error}");
    let client = connect(&server, &pki).await;
    assert_eq!(presented(&client), b.der, "the last good certificate stays");
}

#[tokio::test]
async fn a_changed_file_is_reloaded_by_the_server() {
    let (pki, files) = (Pki::new(), Files::new());
    let (a, b) = (pki.leaf("a"), pki.leaf("b"));
    files.write(&a);
    let server = serve(HttpConfig::default(), &files.tls()).await;
    assert_eq!(presented(&connect(&server, &pki).await), a.der);
    files.write(&b);
    let started = Instant::now();
    while presented(&connect(&server, &pki).await) != b.der {
        assert!(started.elapsed() < PATIENCE, "the new certificate is not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Loads the files `write` makes, and returns the error, or `None` when they load.
fn load(write: impl FnOnce(&Files)) -> Option<TlsError> {
    let files = Files::new();
    write(&files);
    Tls::from_pem_files(files.cert(), files.key()).err()
}

#[test]
fn loading_names_the_file_and_what_is_wrong_with_it() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("a"), pki.leaf("b"));
    let message = |error: Option<TlsError>| super::chain(&error.expect("an error"));
    assert!(load(|files| files.write(&a)).is_none());
    let missing = message(load(|files| replace(&files.key(), &a.key)));
    assert!(missing.starts_with("cannot read ") && missing.contains("cert.pem: "), "{missing}");
    let no_cert = message(load(|files| {
        replace(&files.cert(), &a.key);
        replace(&files.key(), &a.key);
    }));
    assert!(no_cert.ends_with("cert.pem holds no certificate (a PEM `CERTIFICATE` section)"));
    let no_key = message(load(|files| {
        replace(&files.cert(), &a.chain);
        replace(&files.key(), &a.chain);
    }));
    assert!(no_key.contains("key.pem holds no private key"), "{no_key}");
    let mismatch = message(load(|files| {
        replace(&files.cert(), &a.chain);
        replace(&files.key(), &b.key);
    }));
    assert!(mismatch.contains("key.pem is not the key of the certificate in"), "{mismatch}");
    let not_pem = message(load(|files| {
        replace(&files.cert(), "-----BEGIN CERTIFICATE-----\n");
        replace(&files.key(), &a.key);
    }));
    assert!(not_pem.contains("cert.pem is not a valid PEM file: "), "{not_pem}");
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("run openssl (is it installed?): {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "openssl {args:?}: {}\n{stderr}", output.status);
}

#[tokio::test]
async fn keys_are_read_as_pkcs8_pkcs1_or_sec1() {
    let files = Files::new();
    let dir = files.dir.path();
    let self_signed =
        ["req", "-x509", "-key", "key.pem", "-subj", "/CN=localhost", "-days", "1", "-out"];
    // RSA, PKCS#1 (`RSA PRIVATE KEY`).
    openssl(dir, &["genrsa", "-traditional", "-out", "key.pem", "2048"]);
    openssl(dir, &[&self_signed[..], &["cert.pem"]].concat());
    // EC, SEC1 (`EC PRIVATE KEY`).
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.pem"]);
    let ec = ["req", "-x509", "-key", "ec.pem", "-subj", "/CN=localhost", "-days", "1"];
    openssl(dir, &[&ec[..], &["-out", "ec-cert.pem"]].concat());
    for (cert, key, header) in [
        ("cert.pem", "key.pem", "-----BEGIN RSA PRIVATE KEY-----"),
        ("ec-cert.pem", "ec.pem", "-----BEGIN EC PRIVATE KEY-----"),
    ] {
        let pem = std::fs::read_to_string(dir.join(key)).expect("read");
        assert!(pem.starts_with(header), "openssl wrote {pem}");
        let loaded = Tls::from_pem_files(dir.join(cert), dir.join(key));
        loaded.unwrap_or_else(|error| panic!("{key}: {}", super::chain(&error)));
    }
}
