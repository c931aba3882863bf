//! HTTPS served by the server itself (`--tls-cert`, `--tls-key`, `--hsts`): inserts, event
//! streams and audits over TLS, the certificate reloaded on SIGHUP and when its files change
//! without touching open streams, and the flags refused at start-up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eventsource_stream::Event;
use futures_util::{Stream, StreamExt};
use serde_json::json;

use crate::support::{Https, Pki, Server, replace_file, run};

/// How long a reload may take to show: a file change is seen within the server's two-second
/// look, a signal at once.
const RELOAD_PATIENCE: Duration = Duration::from_secs(10);

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

    /// `--tls-cert FILE --tls-key FILE`.
    fn flags(&self) -> Vec<String> {
        let path = |path: PathBuf| path.to_str().expect("a UTF-8 path").to_string();
        vec!["--tls-cert".into(), path(self.cert()), "--tls-key".into(), path(self.key())]
    }
}

/// A server serving HTTPS with the files, plus `extra` flags.
async fn start(files: &Files, extra: &[&str]) -> Server {
    let mut args = files.flags();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(&args, &[]).await
}

/// The next event of `stream`, within a bounded wait.
async fn next_event(stream: &mut (impl Stream<Item = Event> + Unpin)) -> Event {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
}

/// Waits until new connections get the certificate `der`.
async fn wait_for_certificate(https: &Https, server: &Server, der: &[u8]) {
    let started = Instant::now();
    while https.get("/healthz").await.certificate != der {
        assert!(
            started.elapsed() < RELOAD_PATIENCE,
            "the new certificate is not served; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn https_serves_inserts_event_streams_and_audits() {
    let (pki, files) = (Pki::new(), Files::new());
    pki.leaf("a").install(&files.cert(), &files.key());
    let server = start(&files, &["--hsts", "180d"]).await;
    assert!(server.url("/").starts_with("https://"), "the server says it serves HTTPS");
    let https = pki.client(&server);
    let mut events = https.events().await;
    let stored = https.insert("user", json!({"name": "Ferris"})).await.json();
    let event = next_event(&mut events).await;
    assert_eq!((event.event.as_str(), event.data.as_str()), ("user", r#"{"name":"Ferris"}"#));
    let audit = https.get("/audit/user").await;
    assert_eq!(audit.json(), json!([stored]), "{audit:?}");
    // HSTS on every answer, errors included.
    for (path, status) in [("/healthz", 200), ("/nowhere", 404)] {
        let reply = https.get(path).await;
        assert_eq!(reply.status, status, "{reply:?}");
        let hsts = reply.header("strict-transport-security");
        assert_eq!(hsts, Some("max-age=15552000"), "{reply:?}");
    }
    // Plain HTTP to the HTTPS port fails its handshake, which the metrics count.
    let plain = reqwest::Client::builder().no_proxy().build().expect("a client");
    let plain = plain.get(format!("http://{}/healthz", server.addr())).send().await;
    assert!(plain.is_err(), "plain HTTP is not served: {plain:?}");
    let series = r#"broker_connections_closed_total{cause="tls_handshake"}"#;
    let started = Instant::now();
    loop {
        let metrics = https.get("/metrics").await.body;
        if metrics.lines().any(|line| line.starts_with(&format!("{series} "))) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{series} never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_open_streams_go_on() {
    let (pki, files) = (Pki::new(), Files::new());
    let (a, b) = (pki.leaf("a"), pki.leaf("b"));
    a.install(&files.cert(), &files.key());
    let server = start(&files, &[]).await;
    let https = pki.client(&server);
    assert_eq!(https.get("/healthz").await.certificate, a.der);
    let mut events = https.events().await;

    b.install(&files.cert(), &files.key());
    server.signal("HUP");
    wait_for_certificate(&https, &server, &b.der).await;
    // The server also looks at the files every two seconds: the log tells that the signal did
    // reload them.
    let log = server.log();
    assert!(log.contains("SIGHUP: the TLS certificate is reloaded"), "{log}");
    https.insert("after", json!(1)).await;
    assert_eq!(next_event(&mut events).await.event, "after", "the open stream goes on");

    // A key of another certificate: refused, logged, and B stays.
    replace_file(&files.key(), &a.key);
    server.signal("HUP");
    let started = Instant::now();
    while !server.log().contains("SIGHUP: the TLS certificate cannot be loaded") {
        assert!(started.elapsed() < RELOAD_PATIENCE, "no warning; log:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.log().contains("is not the key of the certificate in"), "{}", server.log());
    let certificate = https.get("/healthz").await.certificate;
    assert_eq!(certificate, b.der, "the last good certificate stays");
    https.insert("later", json!(2)).await;
    assert_eq!(next_event(&mut events).await.event, "later");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_signal() {
    let (pki, files) = (Pki::new(), Files::new());
    let (a, b) = (pki.leaf("a"), pki.leaf("b"));
    a.install(&files.cert(), &files.key());
    let server = start(&files, &[]).await;
    let https = pki.client(&server);
    let mut events = https.events().await;
    b.install(&files.cert(), &files.key());
    wait_for_certificate(&https, &server, &b.der).await;
    https.insert("renewed", json!(1)).await;
    assert_eq!(next_event(&mut events).await.event, "renewed", "the open stream goes on");
}

#[tokio::test]
async fn tls_flags_that_cannot_work_stop_the_server_at_start_up() {
    let (pki, files) = (Pki::new(), Files::new());
    let (a, b) = (pki.leaf("a"), pki.leaf("b"));
    a.install(&files.cert(), &files.key());
    let dir = files.dir.path();
    let other_key = dir.join("other.pem");
    std::fs::write(&other_key, &b.key).expect("write");
    let data = dir.join("broker.redb");
    let (cert, key) = (files.cert(), files.key());
    let path = |path: &PathBuf| path.to_str().expect("a UTF-8 path").to_string();
    let missing = dir.join("missing.pem");
    let cases: [(Vec<String>, &str); 5] = [
        (vec!["--tls-cert".into(), path(&cert)], "--tls-cert needs --tls-key"),
        (vec!["--tls-key".into(), path(&key)], "--tls-key needs --tls-cert"),
        (vec!["--hsts".into(), "1d".into()], "--hsts needs --tls-cert and --tls-key"),
        (
            vec!["--tls-cert".into(), path(&missing), "--tls-key".into(), path(&key)],
            "missing.pem: No such file or directory",
        ),
        (
            vec!["--tls-cert".into(), path(&cert), "--tls-key".into(), path(&other_key)],
            "other.pem is not the key of the certificate in",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["--port".to_string(), "0".into(), "--data".into(), path(&data)];
        args.extend(flags);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run(&args, &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} must not listen");
    }
    // The same through the environment.
    let args = ["--port", "0", "--data", data.to_str().expect("a UTF-8 path")];
    let output = run(&args, &[("BROKER_TLS_CERT", &path(&cert))]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--tls-cert needs --tls-key (or BROKER_TLS_KEY)"), "{stderr}");
}
