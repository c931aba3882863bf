//! The NATS JetStream storage on a real three-node cluster: every contract of the storage trait
//! (the conformance suite, for one store and for two sharing a stream), reads that never go back
//! in time while a replica is behind, and appends that fail within a bound, never silently,
//! while the stream's leader is killed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker_storage::{NewVersion, Storage, StorageError, Version, conformance};
use broker_storage_nats::{Credentials, NatsOptions, NatsStorage};

use crate::support::{NODES, NatsCluster, Server, Sse, ids};

/// Stream names made unique within this test binary: each store of the conformance suite starts
/// on an empty stream of its own.
static STREAMS: AtomicUsize = AtomicUsize::new(0);

fn fresh_stream(what: &str) -> String {
    format!("{what}_{}", STREAMS.fetch_add(1, Ordering::Relaxed))
}

/// Options for `stream` on the servers `urls` (comma-separated), three replicas.
fn options(urls: &str, stream: &str) -> NatsOptions {
    let mut options = NatsOptions::default();
    options.servers = urls.split(',').map(str::to_owned).collect();
    options.stream = stream.to_owned();
    options
}

async fn connect(urls: &str, stream: &str) -> NatsStorage {
    NatsStorage::connect(options(urls, stream))
        .await
        .unwrap_or_else(|error| panic!("connect to stream {stream} at {urls}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_storage_passes_the_conformance_suite() {
    let cluster = NatsCluster::start().await;
    let urls = cluster.urls();
    conformance::run(|| {
        let urls = urls.clone();
        async move { connect(&urls, &fresh_stream("conformance")).await }
    })
    .await;
    conformance::run_shared(|| {
        let urls = urls.clone();
        async move {
            let stream = fresh_stream("shared");
            let first = connect(&urls, &stream).await;
            let second = connect(&urls, &stream).await;
            (first, second)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_other_settings_is_refused_with_what_to_change() {
    let cluster = NatsCluster::start().await;
    let stream = fresh_stream("settings");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let mut one_replica = options(&cluster.urls(), &stream);
    one_replica.replicas = 1;
    let error = NatsStorage::connect(one_replica).await.expect_err("another replica count");
    assert!(error.to_string().contains("--nats-replicas 3"), "{error}");

    // A stream made by hand, without deny_delete and with an age limit, is never used.
    let config = serde_json::json!({
        "name": "handmade", "subjects": ["handmade.>"], "num_replicas": 3,
        "max_age": 3_600_000_000_000u64,
        "metadata": { "broker_database_id": "6a2f41a3-c54c-4ce8-b2d2-0324e1c32e22" },
    });
    let created =
        cluster.request(0, "$JS.API.STREAM.CREATE.handmade", config.to_string().as_bytes()).await;
    assert_eq!(created["config"]["name"], "handmade", "{created}");
    let error = NatsStorage::connect(options(&cluster.urls(), "handmade"))
        .await
        .expect_err("a stream that deletes versions");
    assert!(error.to_string().contains("--deny-delete"), "{error}");
}

/// Two servers started with the same `--nats` servers and stream are one database: what is
/// inserted through one is streamed and audited through the other, and a retry with the same
/// `Idempotency-Key` through either stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_stream_share_the_database() {
    let cluster = NatsCluster::start().await;
    let urls = cluster.urls();
    let stream = fresh_stream("servers");
    let args = ["--nats", urls.as_str(), "--nats-stream", stream.as_str()];
    let first = Server::start_with(&args, &[]).await;
    let second = Server::start_with(&args, &[]).await;
    assert_eq!(first.health().await.database_id, second.health().await.database_id);

    let mut events = Sse::snapshot(&second).await;
    let inserted = first.insert("user", serde_json::json!({ "name": "Rusty" })).await;
    let event = events.next_event().await;
    assert_eq!((event.event.as_str(), event.id), ("user", inserted.id), "streamed by the other");
    assert_eq!(
        ids(&second.audit("user").await),
        ids(std::slice::from_ref(&inserted)),
        "audited by the other"
    );

    let headers = [("content-type", "application/json"), ("idempotency-key", "order-1")];
    let body = br#"{"event":"order","data":1}"#;
    let stored = first.request("POST", "/insert", &headers, Some(body.to_vec())).await;
    let retried = second.request("POST", "/insert", &headers, Some(body.to_vec())).await;
    assert_eq!((stored.status, retried.status), (201, 201), "{stored} {retried}");
    assert_eq!(stored.json(), retried.json(), "the retry is answered with the stored version");
    assert_eq!(second.audit("order").await.len(), 1, "and stores nothing");

    // The copy of a stream is for the NATS tools to make.
    let backup = first.get("/backup").await;
    assert!(backup.body.contains("nats stream backup"), "{backup}");
}

/// A follower killed while versions are appended, then restarted, catches up for seconds, and
/// meanwhile answers direct gets from its stale replica. A store that reads only through it must
/// still see every version it knows of: here, every version the stream held when it connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_go_back_in_time_while_a_replica_catches_up() {
    let mut cluster = NatsCluster::start().await;
    let stream = fresh_stream("lagging");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let leader = cluster.stream_leader(&stream).await;
    let follower = (0..NODES).find(|&i| i != leader).expect("three nodes");
    let writer = connect(&cluster.url(leader), &stream).await;
    cluster.kill(follower).await;
    let data = format!("\"{}\"", "x".repeat(500));
    let mut acknowledged: Vec<Version> = Vec::new();
    for batch in 0..20 {
        let versions = (0..1000)
            .map(|n| NewVersion::new(format!("e{}", n % 7), batch, data.clone()))
            .collect();
        acknowledged.extend(writer.append(versions).await.expect("append with a quorum"));
    }
    let last = acknowledged.last().expect("versions were appended").clone();

    // The store connects to the follower as soon as it listens, and reads while it catches up;
    // `restart` returns once the follower has caught up.
    let url = cluster.url(follower);
    let caught_up = std::sync::atomic::AtomicBool::new(false);
    let restart = async {
        cluster.restart(follower).await;
        caught_up.store(true, Ordering::Release);
    };
    let read = async {
        let started = Instant::now();
        let reader = loop {
            match NatsStorage::connect(options(&url, &stream)).await {
                Ok(reader) => break reader,
                // Until the restarted node listens.
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("connect to the restarted follower: {error}"),
            }
        };
        let mut reads = 0;
        while !caught_up.load(Ordering::Acquire) || reads < 10 {
            let since = reader.since(last.id - 100, 1_000).await.expect("since");
            assert_eq!(since.len(), 100, "read {reads}: since misses acknowledged versions");
            let latest = reader.latest().await.expect("latest");
            assert!(latest.contains(&last), "read {reads}: latest misses {}", last.id);
            let history = reader.history(&last.event, last.id - 50, 1_000).await.expect("history");
            assert_eq!(history.last(), Some(&last), "read {reads}: history misses {}", last.id);
            reads += 1;
        }
        reader.close().await.expect("close");
    };
    tokio::join!(restart, read);
    writer.close().await.expect("close");
}

/// More events than one multi-subject get answers for (1,024) are read in groups, as one
/// consistent snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_covers_more_events_than_one_multi_subject_get() {
    let cluster = NatsCluster::start().await;
    let store = connect(&cluster.urls(), &fresh_stream("many")).await;
    let mut expected = Vec::new();
    for batch in 0..3 {
        let versions = (0..1000)
            .map(|n| NewVersion::new(format!("event-{batch}-{n}"), batch, "0".to_owned()))
            .collect();
        expected.extend(store.append(versions).await.expect("append"));
    }
    let newer = store
        .append(vec![NewVersion::new("event-0-7", 9, "1"), NewVersion::new("event-2-0", 9, "1")])
        .await
        .expect("append");
    expected.retain(|version| version.event != "event-0-7" && version.event != "event-2-0");
    expected.extend(newer);
    assert_eq!(
        store.latest().await.expect("latest"),
        expected,
        "one version per event, in id order"
    );
    store.close().await.expect("close");
}

/// What one append during the leader's death ended in.
enum Outcome {
    Stored(Vec<Version>),
    Unavailable,
    Unknown,
}

/// The batch writer `w` appends in round `n`: one version in even rounds, three (an atomic
/// batch) in odd ones, each with an idempotency key and its key as its data.
fn batch(w: usize, n: u64) -> Vec<NewVersion> {
    let len = if n.is_multiple_of(2) { 1 } else { 3 };
    (0..len)
        .map(|i| {
            let key = format!("w{w}-{n}-{i}");
            NewVersion::new("failover", n, format!("\"{key}\"")).with_idempotency_key(key)
        })
        .collect()
}

/// The store is connected to the stream leader alone, which is then killed: the appends in
/// flight lose their connection and their answers, and the client reconnects to a survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_while_the_leader_is_killed_fail_within_a_bound_and_never_silently() {
    let mut cluster = NatsCluster::start().await;
    let stream = fresh_stream("failover");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let leader = cluster.stream_leader(&stream).await;
    let store = std::sync::Arc::new(connect(&cluster.url(leader), &stream).await);
    let bound = NatsOptions::DEFAULT_RETRY_TIMEOUT + NatsOptions::DEFAULT_REQUEST_TIMEOUT * 3;

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let started = Instant::now();
                let mut n = 0;
                while started.elapsed() < Duration::from_secs(15) {
                    let began = Instant::now();
                    let outcome = match store.append(batch(w, n)).await {
                        Ok(stored) => Outcome::Stored(stored),
                        Err(StorageError::Unavailable(_)) => Outcome::Unavailable,
                        Err(StorageError::OutcomeUnknown(_)) => Outcome::Unknown,
                        Err(error) => panic!("append {w}-{n} failed with {error}"),
                    };
                    let took = began.elapsed();
                    assert!(took < bound, "append {w}-{n} took {took:?}, more than {bound:?}");
                    outcomes.push((n, outcome));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (w, outcomes)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.kill(leader).await;
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.push(writer.await.expect("a writer"));
    }
    cluster.restart(leader).await;

    let stored = store.since(0, 1_000_000).await.expect("since after the failover");
    let by_data: HashMap<&str, &Version> =
        stored.iter().map(|version| (version.data.as_str(), version)).collect();
    assert_eq!(by_data.len(), stored.len(), "no version is stored twice");
    let (mut acknowledged, mut unavailable, mut unknown) = (0, 0, 0);
    for (w, outcomes) in &outcomes {
        for (n, outcome) in outcomes {
            let sent = batch(*w, *n);
            let found: Vec<Option<&&Version>> =
                sent.iter().map(|new| by_data.get(new.data.as_str())).collect();
            match outcome {
                Outcome::Stored(versions) => {
                    acknowledged += 1;
                    let expected: Vec<Option<&Version>> = versions.iter().map(Some).collect();
                    let found: Vec<Option<&Version>> =
                        found.into_iter().map(|v| v.copied()).collect();
                    assert_eq!(
                        found, expected,
                        "acknowledged append {w}-{n} is stored as returned"
                    );
                }
                Outcome::Unavailable => {
                    unavailable += 1;
                    assert!(found.iter().all(Option::is_none), "{w}-{n} failed, yet was stored");
                }
                Outcome::Unknown => {
                    unknown += 1;
                    // All or nothing, and a retry with the same keys settles it.
                    assert!(
                        found.iter().all(Option::is_some) || found.iter().all(Option::is_none),
                        "{w}-{n} was stored in part"
                    );
                    let settled = store.append(sent).await.expect("a retry after the failover");
                    for (version, found) in settled.iter().zip(&found) {
                        if let Some(found) = found {
                            assert_eq!(version, **found, "{w}-{n}: the retry returns the original");
                        }
                    }
                }
            }
        }
    }
    assert!(acknowledged > 0, "appends succeed around the failover");
    let after = store.since(0, 1_000_000).await.expect("since after the retries");
    let data: HashSet<&str> = after.iter().map(|version| version.data.as_str()).collect();
    assert_eq!(
        data.len(),
        after.len(),
        "no retry stored a version twice ({acknowledged} acknowledged, {unavailable} \
         unavailable, {unknown} unknown)"
    );
    store.close().await.expect("close");
}

/// With two of three nodes down the stream has no quorum: an append fails within the bound, as
/// unavailable or unknown, and once the nodes are back a retry with the same key stores the
/// version once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_without_a_quorum_fails_within_a_bound_and_a_retry_settles_it() {
    let mut cluster = NatsCluster::start().await;
    let stream = fresh_stream("quorum");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let survivor = cluster.stream_leader(&stream).await;
    let store = connect(&cluster.url(survivor), &stream).await;
    let before = store.append(vec![NewVersion::new("a", 1, "1")]).await.expect("append");
    for i in (0..NODES).filter(|&i| i != survivor) {
        cluster.kill(i).await;
    }
    let bound = NatsOptions::DEFAULT_RETRY_TIMEOUT + NatsOptions::DEFAULT_REQUEST_TIMEOUT * 3;
    let new = NewVersion::new("a", 2, "2").with_idempotency_key("no-quorum");
    let began = Instant::now();
    let result = store.append(vec![new.clone()]).await;
    let took = began.elapsed();
    assert!(
        matches!(result, Err(StorageError::Unavailable(_) | StorageError::OutcomeUnknown(_))),
        "an append without a quorum: {result:?}"
    );
    assert!(took < bound, "the append took {took:?}, more than {bound:?}");
    // The survivor goes on calling itself leader for a while; writable says no once it has not
    // heard from its followers for a few seconds.
    let mut writable = store.writable().await;
    let asked = Instant::now();
    while writable.is_ok() && asked.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writable = store.writable().await;
    }
    assert!(matches!(writable, Err(StorageError::Unavailable(_))), "writable: {writable:?}");

    for i in (0..NODES).filter(|&i| i != survivor) {
        cluster.restart(i).await;
    }
    cluster.stream_leader(&stream).await;
    let retried = store.append(vec![new]).await.expect("the retry once the quorum is back");
    let all = store.since(0, 100).await.expect("since");
    assert_eq!(all, [before[0].clone(), retried[0].clone()], "the version is stored once");
    store.close().await.expect("close");
}

/// A tail whose connection goes with a killed stream leader resumes by itself, on another node,
/// after the last version it delivered: every acknowledged version once, in id order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_resumes_by_itself_when_its_server_is_killed() {
    let mut cluster = NatsCluster::start().await;
    let stream = fresh_stream("tail");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let leader = cluster.stream_leader(&stream).await;
    let follower = connect(&cluster.url((leader + 1) % NODES), &stream).await;
    let tailing = connect(&cluster.url(leader), &stream).await;
    let mut tail = tailing.tail(0);

    let mut acknowledged = Vec::new();
    for n in 0..10 {
        acknowledged
            .extend(follower.append(vec![NewVersion::new("t", n, "0")]).await.expect("append"));
    }
    cluster.kill(leader).await;
    let started = Instant::now();
    let mut n = 10;
    while acknowledged.len() < 20 {
        assert!(started.elapsed() < Duration::from_secs(30), "no new leader to append to");
        if let Ok(stored) = follower.append(vec![NewVersion::new("t", n, "1")]).await {
            acknowledged.extend(stored);
            n += 1;
        }
    }

    let mut delivered: Vec<Version> = Vec::new();
    while delivered.len() < acknowledged.len() {
        match tokio::time::timeout(Duration::from_secs(30), tail.next()).await {
            Ok(Some(Ok(batch))) => delivered.extend(batch),
            other => panic!("the tail stopped after {} versions: {other:?}", delivered.len()),
        }
    }
    assert_eq!(delivered, acknowledged, "every acknowledged version, once, in id order");
    tailing.close().await.expect("close");
    assert!(
        matches!(tokio::time::timeout(Duration::from_secs(10), tail.next()).await, Ok(None)),
        "the tail ends once its store is closed"
    );
    follower.close().await.expect("close");
}

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
