//! What operators read: `/metrics` counting what happened, JSON log lines, and the settings that
//! come from the environment.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::{Server, Sse, binary};

/// Polls `/metrics` until `series` reads `expected`, for at most two seconds.
async fn wait_for_metric(server: &Server, series: &str, expected: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let value = server.metrics().await.value(series);
        if value == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{series} is {value}, not {expected}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_count_inserts_subscribers_frames_and_why_streams_ended() {
    let server = Server::start().await;
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        subscribers.push(Sse::snapshot(&server).await);
    }
    wait_for_metric(&server, "broker_subscribers", 3.0).await;
    for n in 0..5 {
        server.insert("counter", json!(n)).await;
    }
    for subscriber in &mut subscribers {
        assert_eq!(subscriber.events(5).await.len(), 5);
    }

    let metrics = server.metrics().await;
    assert_eq!(metrics.value("broker_inserts_total"), 5.0);
    assert_eq!(metrics.value(r#"broker_http_requests_total{route="insert",status="201"}"#), 5.0);
    assert_eq!(metrics.value(r#"broker_http_requests_total{route="events",status="200"}"#), 3.0);
    assert_eq!(metrics.value("broker_sse_frames_sent_total"), 15.0, "5 frames to each of 3");
    assert!(metrics.value("broker_sse_bytes_sent_total") > 15.0 * 40.0, "each frame is ~50 bytes");
    assert_eq!(metrics.value("broker_commit_batch_size_sum"), 5.0);
    assert_eq!(metrics.value("broker_insert_request_seconds_count"), 5.0);
    assert!(metrics.value("broker_connections_open") >= 3.0);

    drop(subscribers);
    wait_for_metric(&server, "broker_subscribers", 0.0).await;
    wait_for_metric(&server, r#"broker_sse_streams_ended_total{cause="client_gone"}"#, 3.0).await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_connection_open_and_close() {
    let mut server =
        Server::start_with(&["--log-format", "json"], &[("RUST_LOG", "broker_http=debug,info")])
            .await;
    server.insert("logged", json!(1)).await;
    let exit = server.stop("TERM").await;
    assert!(exit.status.success());

    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or_default().to_owned();
    for expected in ["connection opened", "connection closed", "broker opened", "shut down cleanly"]
    {
        assert!(lines.iter().any(|line| message(line) == expected), "no {expected:?} in {log}");
    }
    let closed = lines.iter().find(|line| message(line) == "connection closed").expect("found");
    assert_eq!(closed["level"], "DEBUG");
    assert!(closed["fields"]["peer"].as_str().is_some_and(|peer| peer.starts_with("127.0.0.1:")));
    assert!(closed["fields"]["cause"].is_string(), "the close says why: {closed}");
}

#[tokio::test]
async fn the_port_environment_variable_sets_the_port_as_in_the_seed() {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let port = port.port().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(binary())
        .env("PORT", &port)
        .arg("--data")
        .arg(dir.path().join("broker.redb"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start broker-server");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line());
    let line = line.await.expect("in time");
    let line = line.expect("read stdout").expect("a line");
    assert_eq!(line, format!("broker-server listening on http://127.0.0.1:{port}"));
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.expect("GET");
    assert_eq!(health.status(), 200);
}

/// The `workers` field of the server's "serving" log line, once it is logged.
async fn logged_workers(server: &Server) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log();
        let serving = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["fields"]["message"] == "serving");
        if let Some(serving) = serving {
            return serving["fields"]["workers"]
                .as_u64()
                .unwrap_or_else(|| panic!("no worker count in {serving}"));
        }
        assert!(tokio::time::Instant::now() < deadline, "no \"serving\" line in {log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_runtime_has_the_worker_threads_asked_for_and_by_default_one_fewer_than_the_cpus() {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as u64;
    let json = ["--log-format", "json"];
    let default = cpus.saturating_sub(1).max(1);
    let none: &[(&str, &str)] = &[];
    for (args, env, expected) in [
        (&[][..], none, default),
        (&["--threads", "3"][..], none, 3),
        (&[][..], &[("BROKER_THREADS", "2")][..], 2),
    ] {
        let mut server = Server::start_with(&[&json[..], args].concat(), env).await;
        server.insert("threads", json!(expected)).await;
        assert_eq!(logged_workers(&server).await, expected, "{args:?} {env:?} on {cpus} CPUs");
        assert!(server.stop("TERM").await.status.success());
    }
}
