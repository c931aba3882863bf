//! `--retain`: old versions pruned in the background, the latest of every event kept, the
//! database no longer growing, a client resuming before the horizon starting over from a
//! snapshot, and the audit saying how far an event was pruned.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::snapshot::versions;
use crate::support::{Server, Sse, Version, ids, run};

/// Pruning spares the versions younger than the idempotency window: a short one lets the tests
/// see pruning within a second or two.
const WINDOW: &str = "--idempotency-window=300ms";

/// Polls `event`'s whole history until it holds `count` versions, at most 15 s.
async fn wait_for_history(server: &Server, event: &str, count: usize) -> Vec<Version> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let history = server.audit(event).await;
        if history.len() == count {
            return history;
        }
        assert!(
            Instant::now() < deadline,
            "{event} still holds {} versions, not {count}: {}",
            history.len(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Inserts `count` versions of `event` as arrays of up to 1,000, each with `size` bytes of data.
async fn insert_many(server: &Server, event: &str, count: usize, size: usize) -> Vec<Version> {
    let mut stored = Vec::with_capacity(count);
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        let array: Vec<Value> =
            (0..n).map(|_| json!({"event": event, "data": "x".repeat(size)})).collect();
        let reply = server.post_insert(&Value::from(array).to_string()).await;
        assert_eq!(reply.status, 201, "{reply}");
        stored.extend(
            serde_json::from_str::<Vec<Version>>(&reply.body).expect("the stored versions"),
        );
        left -= n;
    }
    stored
}

#[tokio::test]
async fn rules_prune_old_versions_and_events_no_rule_matches_keep_everything() {
    let server = Server::start_with(
        &[WINDOW, "--retain", "metrics.cpu=1", "--retain", "metrics.*=3", "--retain", "log=1s"],
        &[],
    )
    .await;
    let mut cpu = Vec::new();
    let mut disk = Vec::new();
    let mut form = Vec::new();
    for n in 0..8 {
        cpu.push(server.insert("metrics.cpu", json!(n)).await);
        disk.push(server.insert("metrics.disk", json!(n)).await);
        form.push(server.insert("form", json!(n)).await);
    }
    let log = server.insert("log", json!("old")).await;
    assert_eq!(wait_for_history(&server, "metrics.cpu", 1).await, cpu[7..], "the first rule");
    assert_eq!(wait_for_history(&server, "metrics.disk", 3).await, disk[5..], "the next one");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let young = server.insert("log", json!("young")).await;
    assert_eq!(
        wait_for_history(&server, "log", 1).await,
        std::slice::from_ref(&young),
        "older than 1 s goes"
    );
    assert!(log.id < young.id);
    assert_eq!(server.audit("form").await, form, "an event no rule matches keeps everything");

    let latest = versions(&server.get("/snapshot").await);
    assert_eq!(ids(&latest), ids(&[cpu[7].clone(), disk[7].clone(), form[7].clone(), young]));

    let reply = server.get("/audit/metrics.disk").await;
    assert_eq!(reply.header("broker-pruned-through"), Some(&*disk[4].id.to_string()));
    assert_eq!(server.get("/audit/form").await.header("broker-pruned-through"), None);
    let metrics = server.metrics().await;
    assert_eq!(metrics.value("broker_versions_pruned_total"), 7.0 + 5.0 + 1.0, "7 + 5 + 1");
    assert!(metrics.value("broker_database_bytes") > 0.0, "{:?}", metrics.lines("broker_database"));
}

#[tokio::test]
async fn the_latest_version_survives_any_rule_and_a_restart() {
    let mut server = Server::start_with(&[WINDOW, "--retain", "*=1"], &[]).await;
    for n in 0..5 {
        server.insert("a", json!(n)).await;
    }
    let last = server.insert("a", json!("last")).await;
    let lone = server.insert("b", json!("lone")).await;
    assert_eq!(wait_for_history(&server, "a", 1).await, std::slice::from_ref(&last));
    server.restart().await;
    assert_eq!(server.audit("a").await, std::slice::from_ref(&last), "pruning outlives a restart");
    assert_eq!(server.audit("b").await, std::slice::from_ref(&lone));
    let reply = server.get("/audit/a").await;
    assert_eq!(reply.header("broker-pruned-through"), Some(&*(last.id - 1).to_string()));
    let mut sse = Sse::snapshot(&server).await;
    assert_eq!(ids(&sse.events(2).await), ids(&[last, lone]), "the snapshot loses no event");
}

#[tokio::test]
async fn a_client_resuming_before_the_horizon_gets_a_snapshot_and_is_told_why() {
    let server = Server::start_with(&[WINDOW, "--retain", "pruned=1"], &[]).await;
    let first = server.insert("pruned", json!(1)).await;
    let kept = server.insert("kept", json!(1)).await;
    server.insert("pruned", json!(2)).await;
    let last = server.insert("pruned", json!(3)).await;
    wait_for_history(&server, "pruned", 1).await;
    let database = server.health().await.database_id;
    let resume_at = format!("{}@{database}", first.id);

    let (mut sse, start) =
        Sse::subscribe(&server, "/events", &[("Last-Event-ID", &resume_at)]).await;
    assert_eq!(start.comment, "snapshot");
    assert_eq!(start.header.as_deref(), Some("snapshot"));
    let reason = ("pruned".to_string(), format!("pruned through {}", last.id - 1));
    assert_eq!(start.reason, Some(reason), "Broker-Start-Reason and the second comment");
    assert_eq!(ids(&sse.events(2).await), ids(&[kept.clone(), last.clone()]));

    // A client that follows only events that lost nothing resumes as usual.
    let (mut sse, start) =
        Sse::subscribe(&server, "/events?event=kept", &[("Last-Event-ID", &resume_at)]).await;
    assert_eq!((start.comment.as_str(), start.reason), ("resumed", None));
    assert_eq!(ids(&sse.events(1).await), ids(&[kept]));
    // And so does one whose id is after the horizon.
    let after = format!("{}@{database}", last.id - 1);
    let (_, start) = Sse::subscribe(&server, "/events", &[("Last-Event-ID", &after)]).await;
    assert_eq!(start.comment, "resumed");
}

#[tokio::test]
async fn pruning_lets_the_database_file_stop_growing() {
    // Each round stores 4 MiB in one event; with `--retain big=1` the space of a round is reused
    // by the next once it is pruned, so the file stays near the size of one or two rounds.
    // redb grows its file by doubling it: the pruned file may still double once, when a round
    // comes before a checkpoint has freed the last one's pages, so the rounds go on long enough
    // for the file that keeps everything to double twice more.
    const ROUNDS: usize = 10;
    let sizes = |retain: bool| async move {
        let mut args = vec![WINDOW];
        if retain {
            args.extend(["--retain", "big=1"]);
        }
        let server = Server::start_with(&args, &[]).await;
        let mut sizes = Vec::new();
        for _ in 0..ROUNDS {
            insert_many(&server, "big", 4000, 1000).await;
            if retain {
                wait_for_history(&server, "big", 1).await;
                // Freed pages are reused once a checkpoint (every second) has made them free.
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            sizes.push(std::fs::metadata(server.data_path()).expect("the database file").len());
        }
        sizes
    };
    let kept = sizes(false).await;
    let pruned = sizes(true).await;
    println!("database file after each 4 MB round: keeping all {kept:?}, pruning {pruned:?}");
    let growth = |sizes: &[u64]| sizes[ROUNDS - 1].saturating_sub(sizes[1]);
    assert!(growth(&kept) > 30_000_000, "without retention the file grows: {kept:?}");
    assert!(
        growth(&pruned) < growth(&kept) / 4,
        "with retention the file stops growing: {pruned:?} against {kept:?}"
    );
}

#[tokio::test]
async fn rules_come_from_the_environment_and_a_bad_one_stops_the_server_saying_why() {
    let server = Server::start_with(&[WINDOW], &[("BROKER_RETAIN", "a=1 b=2")]).await;
    for n in 0..4 {
        server.insert("a", json!(n)).await;
        server.insert("b", json!(n)).await;
    }
    assert_eq!(wait_for_history(&server, "a", 1).await.len(), 1);
    assert_eq!(wait_for_history(&server, "b", 2).await.len(), 2);

    for bad in ["metrics", "metrics.*=0", "a=soon", "=5", "a=1,2"] {
        let output = run(&["--retain", bad, "--port", "0"], &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--retain {bad:?} must be refused: {stderr}");
        assert!(stderr.contains("--retain"), "the error names the flag: {stderr}");
        assert!(
            stderr.contains("PATTERN=RULE") || stderr.contains("count"),
            "and says why: {stderr}"
        );
    }
}
