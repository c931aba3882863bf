//! Logging in to NATS: a token, a user and password, and TLS through a given certificate
//! authority, each against a standalone `nats-server` that asks for it.

use std::time::{Duration, Instant};

use broker_storage::{NewVersion, Storage, StorageError};
use broker_storage_nats::{Credentials, NatsStorage};

use super::options;

/// One `nats-server` with JetStream that asks for credentials (`args`, its own flags): the
/// cluster of the other tests asks for none.
struct Secured {
    /// Killed when dropped.
    _child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Secured {
    async fn start(args: &[&str]) -> Secured {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = tokio::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run nats-server");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "nats-server did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Secured { _child: child, url: format!("nats://127.0.0.1:{port}"), _dir: dir }
    }

    /// Connects to a stream of one replica with `credentials`.
    async fn connect(&self, credentials: Credentials) -> Result<NatsStorage, StorageError> {
        let mut options = options(&self.url, "secured");
        options.replicas = 1;
        options.credentials = credentials;
        NatsStorage::connect(options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_what_a_server_that_asks_for_them_gets() {
    let token = Secured::start(&["--auth", "s3cret-token"]).await;
    let refused = token.connect(Credentials::None).await.expect_err("no token");
    assert!(refused.to_string().to_lowercase().contains("authorization"), "{refused}");
    let store = token.connect(Credentials::Token("s3cret-token".into())).await.expect("token");
    let stored = store.append(vec![NewVersion::new("a", 1, "1")]).await.expect("append");
    assert_eq!(store.since(0, 10).await.expect("since"), stored);
    store.close().await.expect("close");

    let password = Secured::start(&["--user", "broker", "--pass", "pw"]).await;
    let wrong = Credentials::UserPassword { user: "broker".into(), password: "no".into() };
    password.connect(wrong).await.expect_err("a wrong password");
    let right = Credentials::UserPassword { user: "broker".into(), password: "pw".into() };
    let store = password.connect(right).await.expect("user and password");
    store.append(vec![NewVersion::new("a", 1, "1")]).await.expect("append");
    store.close().await.expect("close");
}

/// Makes a certificate authority and a certificate for 127.0.0.1 signed by it, in `dir`, with
/// openssl: `ca.pem`, `server.pem`, `server.key`.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run openssl (cargo xtask setup installs it)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    run(&["genrsa", "-out", "ca.key", "2048"]);
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("write san.cnf");
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-days",
        "1",
        "-subj",
        "/CN=test ca",
        "-out",
        "ca.pem",
    ]);
    run(&["genrsa", "-out", "server.key", "2048"]);
    run(&["req", "-new", "-key", "server.key", "-subj", "/CN=127.0.0.1", "-out", "server.csr"]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
        "-out",
        "server.pem",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_tls_is_reached_through_the_given_certificate_authority() {
    let certs = tempfile::tempdir().expect("a temporary directory");
    certificates(certs.path());
    let path = |name: &str| certs.path().join(name).display().to_string();
    let (cert, key) = (path("server.pem"), path("server.key"));
    let server = Secured::start(&["--tls", "--tlscert", &cert, "--tlskey", &key]).await;

    let mut options = options(&server.url, "tls");
    options.replicas = 1;
    let untrusted = NatsStorage::connect(options.clone()).await;
    assert!(untrusted.is_err(), "a certificate no trusted authority signed is refused");
    options.tls_ca = Some(certs.path().join("ca.pem"));
    let store = NatsStorage::connect(options).await.expect("connect with the authority");
    let stored = store.append(vec![NewVersion::new("a", 1, "1")]).await.expect("append");
    assert_eq!(store.since(0, 10).await.expect("since"), stored);
    store.close().await.expect("close");
}
