//! The documented NATS setting `jetstream { sync_interval: always }` at work: each node reports
//! it, and the stream's leader writes every acknowledged insert to disk (an `fsync` or
//! `fdatasync` per insert, counted with strace) before the broker acknowledges it. Without the
//! setting JetStream syncs every two minutes, and nodes that lose power together lose what was
//! acknowledged in between (docs/SCALING.md).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::support::{NODES, NatsCluster, Server};

/// Sequential inserts while the leader is traced: each is acknowledged before the next is sent,
/// so each needs a sync of its own.
const INSERTS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_insert_is_synced_to_disk_by_the_streams_leader() {
    let cluster = NatsCluster::start().await;
    for node in 0..NODES {
        let varz = cluster.varz(node).await;
        assert_eq!(
            varz["jetstream"]["config"]["sync_always"], true,
            "node {node} runs with sync_interval: always: {}",
            varz["jetstream"]["config"]
        );
    }
    let urls = cluster.urls();
    let server = Server::start_with(&["--nats", &urls, "--nats-stream", "durability"], &[]).await;
    server.insert_raw("warm-up", "0").await;
    let leader = cluster.stream_leader("durability").await;

    let trace = tempfile::NamedTempFile::new().expect("a file for the trace");
    let strace = Command::new("strace")
        .args(["-f", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(trace.path())
        .args(["-p", &cluster.pid(leader).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run strace (`cargo xtask setup` installs it)");
    // strace says on standard error once it has attached to every thread.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..INSERTS {
        server.insert_raw("order", &n.to_string()).await;
    }
    let pid = strace.id().expect("strace runs").to_string();
    let stopped = Command::new("kill").args(["-INT", &pid]).status().await.expect("run kill");
    assert!(stopped.success(), "strace could not be stopped");
    let output = tokio::time::timeout(Duration::from_secs(10), strace.wait_with_output())
        .await
        .expect("strace stops")
        .expect("strace's output");
    let text = std::fs::read_to_string(trace.path()).expect("read the trace");
    let syncs =
        text.lines().filter(|line| line.contains("sync(") && !line.contains("resumed")).count();
    assert!(
        syncs >= INSERTS,
        "the leader synced {syncs} times for {INSERTS} acknowledged inserts; strace said {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
