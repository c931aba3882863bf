//! `broker-server backup` and `GET /backup`: a consistent copy of a running server's database,
//! taken under load, that checks clean and serves as the database of a restored server; and who
//! may take one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use super::{check, describe, lines, utf8};
use crate::auth::{claims, get, sign, start};
use crate::support::{Server, Version, run};

/// Events the inserters cycle over.
const EVENTS: [&str; 3] = ["a", "b", "c"];
/// Concurrent inserters.
const INSERTERS: usize = 4;

/// `broker-server backup --to to` from `server`, with `env`.
async fn backup(
    server: &Server,
    to: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    let url = server.url("");
    run(&["backup", "--to", utf8(to), "--url", &url], env).await
}

/// Inserts into `server` until `stop` is set, each inserter on its own event; returns every
/// acknowledged version.
async fn insert_until(
    server: &Server,
    stop: &AtomicBool,
    acknowledged: &AtomicUsize,
) -> Vec<Version> {
    let inserters = (0..INSERTERS).map(|inserter| async move {
        let mut versions = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let event = EVENTS[(inserter + i) % EVENTS.len()];
            versions.push(server.insert(event, json!({ "inserter": inserter, "i": i })).await);
            acknowledged.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
        versions
    });
    futures_util::future::join_all(inserters).await.into_iter().flatten().collect()
}

/// Waits until `count` reaches `at_least`.
async fn wait_for(count: &AtomicUsize, at_least: usize) {
    let waited = async {
        while count.load(Ordering::Relaxed) < at_least {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), waited).await.expect("inserts flow");
}

#[tokio::test]
async fn a_backup_taken_under_load_checks_clean_and_restores_a_prefix_of_what_was_acknowledged() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let copy = dir.path().join("copy.redb");
    let (stop, acknowledged) = (AtomicBool::new(false), AtomicUsize::new(0));
    let taken = async {
        wait_for(&acknowledged, 200).await;
        let output = backup(&server, &copy, &[]).await;
        // Inserts go on after the copy, so that it cannot hold them all by chance.
        let after = acknowledged.load(Ordering::Relaxed) + 100;
        wait_for(&acknowledged, after).await;
        stop.store(true, Ordering::Relaxed);
        output
    };
    let (inserted, output) = tokio::join!(insert_until(&server, &stop, &acknowledged), taken);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = lines(&output.stdout);
    assert_eq!(stdout.len(), 1, "one line: {}", describe(&output));
    let size = std::fs::metadata(&copy).expect("the copy exists").len();
    assert!(stdout[0].contains(&size.to_string()) && stdout[0].contains(utf8(&copy)), "{stdout:?}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert_eq!(leftovers.len(), 1, "no partial file is left: {leftovers:?}");
    let scratch: Vec<_> = std::fs::read_dir(server.data_path().parent().expect("a directory"))
        .expect("list")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.contains("backup"))
        .collect();
    assert_eq!(scratch, Vec::<String>::new(), "the server removed its scratch copy");

    let checked = check(&copy).await;
    assert_eq!(checked.status.code(), Some(0), "the copy checks clean: {}", describe(&checked));
    let contents = std::fs::read(&copy).expect("read the copy");

    // A second backup to the same file is refused, and the file left as it was.
    let again = backup(&server, &copy, &[]).await;
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"), "{}", describe(&again));
    assert!(std::fs::read(&copy).expect("read the copy") == contents, "the copy is unchanged");

    let original = server.health().await;
    let restored = Server::start_with(&["--data", utf8(&copy)], &[]).await;
    let health = restored.health().await;
    assert_eq!(health.database_id, original.database_id, "the copy is the same database");
    let last = health.last_id;
    let by_id: BTreeMap<u64, &Version> = inserted.iter().map(|v| (v.id, v)).collect();
    let expected: Vec<&Version> = by_id.range(..=last).map(|(_, version)| *version).collect();
    eprintln!("the copy ends at id {last} of {}", original.last_id);
    assert!(last > 0 && last < original.last_id, "the copy was taken while inserts ran");
    let mut stored = Vec::new();
    for event in EVENTS {
        stored.extend(restored.audit(event).await);
    }
    stored.sort_by_key(|version| version.id);
    let stored: Vec<&Version> = stored.iter().collect();
    assert_eq!(stored, expected, "the copy holds every acknowledged version up to id {last}");
}

#[tokio::test]
async fn a_backup_needs_a_token_that_may_audit_every_event() {
    let server = start(&[]).await;
    get(&server, "/backup", None).await.expect_missing_token();
    let partial = sign(&claims(&["*"], &["*"], &["a.*", "b"]));
    get(&server, "/backup", Some(&partial)).await.expect_insufficient_scope();

    let dir = tempfile::tempdir().expect("a temporary directory");
    let refused = dir.path().join("refused.redb");
    let output = backup(&server, &refused, &[("BROKER_TOKEN", &partial)]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("403"), "{}", describe(&output));
    assert!(!refused.exists(), "nothing is written for a refused backup");

    let every = sign(&claims(&[], &[], &["*"]));
    let copy = dir.path().join("copy.redb");
    let output = backup(&server, &copy, &[("BROKER_TOKEN", &every)]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let checked = check(&copy).await;
    assert_eq!(checked.status.code(), Some(0), "{}", describe(&checked));
}
