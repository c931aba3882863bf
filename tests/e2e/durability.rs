//! Durability under real failures: SIGKILL in the middle of concurrent inserts, group commit
//! under load, SIGTERM with publishers and subscribers active, and resuming a stream across a
//! crash. An insert is durable once it is acknowledged; one that was never answered may or may
//! not be stored, but nothing else may be.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use crate::support::{Frame, Server, Sse, Version, ids};

/// The events the inserters write; several inserters share each, so that "latest" means
/// something.
const EVENTS: [&str; 4] = ["k0", "k1", "k2", "k3"];

/// The most inserts one inserter sends in one run, so that every loop ends.
const MAX_PER_INSERTER: usize = 5000;

/// How long a run may take to reach the number of acknowledged inserts it waits for.
const ACK_TIMEOUT: Duration = Duration::from_secs(20);

/// What became of one insert request.
#[derive(Debug)]
enum Outcome {
    /// `201`: the version as acknowledged.
    Acknowledged(Version),
    /// `503 unavailable`: the server refused it.
    Refused,
    /// No answer: the connection failed or was cut.
    Unanswered,
}

/// One insert sent and its outcome; `data` is the JSON text sent, unique across a test.
#[derive(Debug)]
struct Sent {
    data: String,
    outcome: Outcome,
}

/// Sends one insert of `data` (compact JSON text) as `event` with its own client, so that a
/// failed request is an outcome rather than a panic.
async fn send(client: &reqwest::Client, url: &str, event: &str, data: &str) -> Outcome {
    let body = format!(r#"{{"event":"{event}","data":{data}}}"#);
    let sent = client.post(url).header("content-type", "application/json").body(body).send().await;
    let Ok(response) = sent else { return Outcome::Unanswered };
    let status = response.status().as_u16();
    let Ok(text) = response.text().await else { return Outcome::Unanswered };
    match status {
        201 => {
            let version: Version = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("a 201 without a version ({error}): {text}"));
            assert_eq!((version.event.as_str(), version.data.get()), (event, data), "{text}");
            Outcome::Acknowledged(version)
        }
        503 => {
            let error: serde_json::Value = serde_json::from_str(&text).expect("a JSON error");
            assert_eq!(error["error"], "unavailable", "{text}");
            Outcome::Refused
        }
        other => panic!("insert {data} got {other}: {text}"),
    }
}

/// One publisher: inserts versions one after another, each with data unique to `(run, task, n)`
/// and padded with `pad` bytes, until a request is refused or unanswered (or
/// [`MAX_PER_INSERTER`]); counts acknowledgements in `acked`.
async fn inserter(
    client: &reqwest::Client,
    url: &str,
    (run, pad): (&str, usize),
    task: usize,
    acked: &AtomicUsize,
) -> Vec<Sent> {
    let event = EVENTS[task % EVENTS.len()];
    let padding = "x".repeat(pad);
    let mut sent = Vec::new();
    for n in 0..MAX_PER_INSERTER {
        let data = json!({"run": run, "task": task, "n": n, "pad": padding}).to_string();
        let outcome = send(client, url, event, &data).await;
        let go_on = matches!(outcome, Outcome::Acknowledged(_));
        if go_on {
            acked.fetch_add(1, Ordering::Relaxed);
        }
        sent.push(Sent { data, outcome });
        if !go_on {
            break;
        }
    }
    sent
}

/// What [`insert_then_signal`] saw: every insert sent, and how the server exited.
struct Run {
    sent: Vec<Sent>,
    status: ExitStatus,
    /// From the signal to the exit.
    elapsed: Duration,
}

/// Runs `tasks` inserters against `server`, each version padded with `pad` bytes, and, once
/// `threshold` inserts are acknowledged, sends `signal` and waits for the server to exit.
async fn insert_then_signal(
    server: &mut Server,
    (run, pad): (&str, usize),
    tasks: usize,
    threshold: usize,
    signal: &str,
) -> Run {
    let client = reqwest::Client::builder().no_proxy().build().expect("an HTTP client");
    let url = server.url("/insert");
    let acked = AtomicUsize::new(0);
    let inserters = (0..tasks).map(|task| inserter(&client, &url, (run, pad), task, &acked));
    let inserts = futures_util::future::join_all(inserters);
    let stop = async {
        let start = Instant::now();
        while acked.load(Ordering::Relaxed) < threshold {
            assert!(start.elapsed() < ACK_TIMEOUT, "{threshold} acknowledgements take too long");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.stop(signal).await
    };
    let (sent, exit) = tokio::join!(inserts, stop);
    Run { sent: sent.into_iter().flatten().collect(), status: exit.status, elapsed: exit.elapsed }
}

/// Every stored version of every event of [`EVENTS`], by id; checks that ids are unique across
/// events.
async fn stored(server: &Server) -> BTreeMap<u64, Version> {
    let mut stored = BTreeMap::new();
    for event in EVENTS {
        for version in server.audit(event).await {
            let id = version.id;
            assert!(stored.insert(id, version).is_none(), "id {id} is stored twice");
        }
    }
    stored
}

/// Checks that every acknowledged version is stored exactly as it was acknowledged, that none
/// refused with 503 is, and that everything stored is something that was sent.
fn check_stored(stored: &BTreeMap<u64, Version>, sent: &[Sent]) {
    let by_data: BTreeMap<&str, &Version> =
        stored.values().map(|version| (version.data.get(), version)).collect();
    assert_eq!(by_data.len(), stored.len(), "one insert is stored twice");
    for Sent { data, outcome } in sent {
        match outcome {
            Outcome::Acknowledged(version) => {
                let found = stored.get(&version.id);
                assert_eq!(found, Some(version), "the acknowledged insert {data} as stored");
            }
            Outcome::Refused => {
                assert!(!by_data.contains_key(data.as_str()), "{data} was refused yet stored")
            }
            Outcome::Unanswered => {}
        }
    }
    let all_sent: BTreeSet<&str> = sent.iter().map(|sent| sent.data.as_str()).collect();
    for version in stored.values() {
        assert!(all_sent.contains(version.data.get()), "stored but never sent: {version:?}");
    }
}

/// Checks that a new subscriber's snapshot is the latest stored version of each event, oldest
/// first, and nothing more.
async fn check_snapshot(server: &Server, stored: &BTreeMap<u64, Version>) {
    let mut latest: BTreeMap<&str, &Version> = BTreeMap::new();
    for version in stored.values() {
        latest.insert(&version.event, version);
    }
    let mut expected: Vec<_> = latest.into_values().map(Version::key).collect();
    expected.sort_by_key(|(_, id, _)| *id);
    let mut sse = Sse::snapshot(server).await;
    let snapshot: Vec<_> = sse.events(expected.len()).await.iter().map(|e| e.key()).collect();
    assert_eq!(snapshot, expected, "the snapshot is the latest version of each event");
    sse.expect_no_event(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn acknowledged_inserts_survive_repeated_sigkill_and_ids_keep_increasing() {
    let mut server = Server::start().await;
    let database = server.health().await.database_id;
    let mut sent = Vec::new();
    let mut before = BTreeMap::new();
    for cycle in 0..5 {
        // The kill comes at a different point of each run.
        let threshold = 60 + 70 * cycle;
        let run = (format!("c{cycle}"), 0);
        let run = insert_then_signal(&mut server, (&run.0, run.1), 8, threshold, "KILL").await;
        assert_eq!(run.status.signal(), Some(9), "cycle {cycle}: the server died of SIGKILL");
        sent.extend(run.sent);

        server.start_again().await;
        let health = server.health().await;
        assert_eq!(health.database_id, database, "cycle {cycle}: the same database reopens");
        let stored = stored(&server).await;
        check_stored(&stored, &sent);
        for (id, version) in &before {
            assert_eq!(stored.get(id), Some(version), "cycle {cycle}: a stored version changed");
        }
        let last = *stored.keys().next_back().expect("something is stored");
        assert_eq!(health.last_id, last, "cycle {cycle}: /healthz last_id");
        check_snapshot(&server, &stored).await;

        // The first id after the restart is above every id given out before it.
        let data = json!({"run": format!("probe{cycle}")}).to_string();
        let probe = server.insert_raw(EVENTS[cycle % EVENTS.len()], &data).await;
        assert!(probe.id > last, "cycle {cycle}: id {} after a crash at {last}", probe.id);
        sent.push(Sent { data, outcome: Outcome::Acknowledged(probe) });
        before = stored;
    }
    let acknowledged =
        sent.iter().filter(|sent| matches!(sent.outcome, Outcome::Acknowledged(_))).count();
    eprintln!("{acknowledged} of {} inserts acknowledged across 5 crashes", sent.len());
}

/// The journal moves to its next generation every 2 MiB of records, and the checkpoint of the
/// one before runs beside the inserts: a crash in any of its phases keeps every acknowledged
/// insert.
#[tokio::test]
async fn acknowledged_inserts_survive_sigkill_while_the_journal_checkpoints() {
    const PAD: usize = 16 * 1024;
    let mut server = Server::start().await;
    let mut sent = Vec::new();
    for cycle in 0..3 {
        // 16 KiB each: 400 to 800 inserts are 3 to 6 generations of the journal.
        let threshold = 400 + 200 * cycle;
        let run = format!("big{cycle}");
        let run = insert_then_signal(&mut server, (&run, PAD), 8, threshold, "KILL").await;
        assert_eq!(run.status.signal(), Some(9), "cycle {cycle}: the server died of SIGKILL");
        sent.extend(run.sent);

        server.start_again().await;
        let stored = stored(&server).await;
        check_stored(&stored, &sent);
        let last = *stored.keys().next_back().expect("something is stored");
        assert_eq!(server.health().await.last_id, last, "cycle {cycle}: /healthz last_id");
    }
}

#[tokio::test]
async fn concurrent_inserts_share_commits_and_get_distinct_ids_in_commit_order() {
    const INSERTS: usize = 2000;
    let server = Server::start().await;
    let inserts = futures_util::stream::iter(0..INSERTS)
        .map(|i| {
            let server = &server;
            async move { server.insert(EVENTS[i % EVENTS.len()], json!(i)).await }
        })
        .buffer_unordered(64);
    let mut inserted: Vec<Version> = inserts.collect().await;

    let metrics = server.metrics().await;
    let total = metrics.value("broker_inserts_total");
    let commits = metrics.value("broker_commit_batch_size_count");
    let batched = metrics.value("broker_commit_batch_size_sum");
    eprintln!("{total} inserts in {commits} commits");
    assert_eq!((total, batched), (INSERTS as f64, INSERTS as f64), "inserts committed");
    assert!(commits >= 1.0 && commits < total, "{commits} commits for {total} inserts");

    inserted.sort_by_key(|version| version.id);
    let distinct: BTreeSet<u64> = inserted.iter().map(|version| version.id).collect();
    assert_eq!(distinct.len(), INSERTS, "every insert has its own id");
    // A commit's versions share its timestamp, and timestamps never go back in commit order: in
    // id order they never decrease, so ids follow the order of commits.
    let timestamps: Vec<u64> = inserted.iter().map(|version| version.timestamp).collect();
    assert!(timestamps.is_sorted(), "timestamps in id order: {timestamps:?}");
    let stored: Vec<Version> = stored(&server).await.into_values().collect();
    assert_eq!(stored, inserted, "the audit log holds every insert as acknowledged");
}

#[tokio::test]
async fn sigterm_under_load_exits_zero_in_time_ends_streams_cleanly_and_keeps_every_ack() {
    const DEADLINE: Duration = Duration::from_secs(5);
    let mut server = Server::start_with(&["--shutdown-timeout", "5s"], &[]).await;
    let first = server.insert(EVENTS[0], json!("first")).await;
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut sse = Sse::snapshot(&server).await;
        sse.next_event().await;
        readers.push(tokio::spawn(async move {
            let frames = sse.until_end(Duration::from_secs(30)).await;
            (frames, sse.ended_cleanly())
        }));
    }
    server.wait_for_subscribers(4, Duration::from_secs(5)).await;

    let run = insert_then_signal(&mut server, ("load", 0), 16, 300, "TERM").await;
    assert_eq!(run.status.code(), Some(0), "SIGTERM under load; log:\n{}", server.log());
    assert!(run.elapsed < DEADLINE, "exit took {:?}, the deadline is {DEADLINE:?}", run.elapsed);
    let mut received = Vec::new();
    for reader in readers {
        let (frames, clean) = reader.await.expect("a reader");
        assert!(clean, "a stream ended without its last chunk");
        let events: Vec<_> = frames
            .into_iter()
            .filter_map(|frame| match frame {
                Frame::Event(event) => Some(event),
                _ => None,
            })
            .collect();
        let order: Vec<u64> = events.iter().map(|event| event.id).collect();
        assert!(order.is_sorted_by(|a, b| a < b), "a stream went back: {order:?}");
        received.extend(events);
    }

    server.start_again().await;
    let mut all_sent = run.sent;
    all_sent
        .push(Sent { data: first.data.get().to_string(), outcome: Outcome::Acknowledged(first) });
    let stored = stored(&server).await;
    check_stored(&stored, &all_sent);
    for event in received {
        let version = stored.get(&event.id).map(Version::key);
        assert_eq!(version, Some(event.key()), "a version a subscriber received is stored");
    }
    let refused = all_sent.iter().filter(|sent| matches!(sent.outcome, Outcome::Refused)).count();
    eprintln!("{} inserts sent, {} stored, {refused} refused", all_sent.len(), stored.len());
}

#[tokio::test]
async fn a_subscriber_resumes_across_a_sigkill_with_no_gap_and_no_duplicate() {
    let mut server = Server::start().await;
    let database = server.health().await.database_id;
    let mut sse = Sse::snapshot(&server).await;
    let mut seen = Vec::new();
    for (i, event) in ["a", "b", "a", "c"].into_iter().enumerate() {
        seen.push(server.insert(event, json!({"seen": i})).await);
    }
    assert_eq!(ids(&sse.events(seen.len()).await), ids(&seen));
    let last_seen = seen.last().expect("four versions").id;
    // Versions the subscriber does not read before the crash, then inserts still in flight when
    // it comes.
    for (i, event) in ["b", "a", "d", "c", "a"].into_iter().enumerate() {
        server.insert(event, json!({"unseen": i})).await;
    }
    let run = insert_then_signal(&mut server, ("crash", 0), 4, 40, "KILL").await;
    assert_eq!(run.status.signal(), Some(9), "the server died of SIGKILL");
    // Everything the old stream carried was whole, but it ends without its last chunk.
    sse.until_end(Duration::from_secs(10)).await;
    assert!(!sse.ended_cleanly(), "a killed server cannot end the stream properly");

    server.start_again().await;
    assert_eq!(server.health().await.database_id, database);
    let stored = stored(&server).await;
    check_stored(&stored, &run.sent);
    let mut after: Vec<Version> = stored.into_values().collect();
    for event in ["a", "b", "c", "d"] {
        after.extend(server.audit(event).await);
    }
    after.retain(|version| version.id > last_seen);
    after.sort_by_key(|version| version.id);
    assert!(after.len() >= 5 + 40, "the unseen and acknowledged versions are stored");

    let last_event_id = format!("{last_seen}@{database}");
    let query = format!("/events?lastEventId={}", crate::support::encode(&last_event_id));
    let resumes = [("/events", Some(last_event_id.as_str())), (query.as_str(), None)];
    for (path, header) in resumes {
        let headers: Vec<_> = header.map(|id| ("Last-Event-ID", id)).into_iter().collect();
        let (mut resumed, start) = Sse::subscribe(&server, path, &headers).await;
        assert_eq!(start.comment, "resumed", "{path} {headers:?}");
        let replay: Vec<_> = resumed.events(after.len()).await.iter().map(|e| e.key()).collect();
        let expected: Vec<_> = after.iter().map(Version::key).collect();
        assert_eq!(replay, expected, "the replay after id {last_seen}");
        resumed.expect_no_event(Duration::from_millis(200)).await;
        let live = server.insert("a", json!({"live": path})).await;
        assert_eq!(resumed.next_event().await.key(), live.key(), "then live");
        after.push(live);
    }
}
