//! Checking, backing up and restoring a database, and what the server says when it cannot start:
//! `broker-server check` on clean, damaged and busy files, the server on a damaged file or on one
//! another server serves, `broker-server backup` from a running server under load, and the server
//! restored from the copy.

mod backup;

use std::path::Path;
use std::process::Output;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::support::{Server, run};

/// redb's page size: damage is written at page boundaries, where page headers are.
const PAGE: u64 = 4096;

/// What a command printed, and how it exited, for failure messages.
fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The lines a command printed on one stream.
fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes).lines().map(str::to_owned).collect()
}

/// Checks that a command neither reported a panic nor suggested a backtrace.
fn assert_no_panic(what: &str, output: &Output) {
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), describe(output));
    let all = all.to_lowercase();
    assert!(
        !all.contains("panicked") && !all.contains("backtrace"),
        "{what}: {}",
        describe(output)
    );
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// `broker-server check --data path`.
async fn check(path: &Path) -> Output {
    run(&["check", "--data", utf8(path)], &[]).await
}

/// The server started on `data` and expected to fail before it listens.
async fn start_failing(data: &Path) -> Output {
    let output = run(&["--port", "0", "--bind", "127.0.0.1", "--data", utf8(data)], &[]).await;
    assert!(
        !output.status.success(),
        "the server started on {}: {}",
        data.display(),
        describe(&output)
    );
    assert!(output.stdout.is_empty(), "it never says it listens: {}", describe(&output));
    output
}

#[tokio::test]
async fn check_reports_a_clean_file_in_one_line_with_what_it_holds() {
    let mut server = Server::start().await;
    for (i, event) in ["a", "b", "a"].into_iter().enumerate() {
        server.insert(event, json!({ "i": i })).await;
    }
    let health = server.health().await;
    let exit = server.stop("TERM").await;
    assert!(exit.status.success(), "{}", server.log());

    let output = check(server.data_path()).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = lines(&output.stdout);
    assert_eq!(stdout.len(), 1, "one line: {}", describe(&output));
    for expected in ["clean", "3 versions", "2 events", "last id 3", &health.database_id] {
        assert!(stdout[0].contains(expected), "{expected:?} in {:?}", stdout[0]);
    }
    assert!(output.stderr.is_empty(), "{}", describe(&output));
}

#[tokio::test]
async fn check_on_a_file_a_running_server_holds_says_so_and_suggests_a_backup() {
    let server = Server::start().await;
    server.insert("a", json!(1)).await;
    let output = check(server.data_path()).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = lines(&output.stderr);
    assert_eq!(stderr.len(), 1, "one line: {}", describe(&output));
    for expected in ["running broker", "broker-server backup --to", "broker-server check --data"] {
        assert!(stderr[0].contains(expected), "{expected:?} in {:?}", stderr[0]);
    }
    // The server goes on serving.
    server.insert("a", json!(2)).await;
}

#[tokio::test]
async fn a_second_server_on_a_served_file_refuses_to_start_and_the_first_keeps_serving() {
    let server = Server::start().await;
    let first = server.insert("a", json!(1)).await;
    let output = start_failing(server.data_path()).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = lines(&output.stderr);
    assert_eq!(stderr.len(), 1, "one line: {}", describe(&output));
    for expected in [utf8(server.data_path()), "another process serves"] {
        assert!(stderr[0].contains(expected), "{expected:?} in {:?}", stderr[0]);
    }
    // The first server goes on serving, its file whole.
    let second = server.insert("a", json!(2)).await;
    let ids: Vec<u64> = server.audit("a").await.iter().map(|version| version.id).collect();
    assert_eq!(ids, [first.id, second.id], "{}", server.log());
}

/// Copies of a database, each with 32-byte ranges overwritten at a few page boundaries.
const COPIES: usize = 24;
const RANGES_PER_COPY: usize = 3;

#[tokio::test]
async fn damaged_files_are_reported_by_check_and_refused_at_start_up_in_one_line() {
    let mut server = Server::start().await;
    // Enough versions, and long enough data, to spread the tables over many pages.
    for i in 0..400 {
        let data = json!({ "i": i, "text": "x".repeat(i % 7 * 100) });
        server.insert(&format!("event-{}", i % 23), data).await;
    }
    let exit = server.stop("TERM").await;
    assert!(exit.status.success(), "{}", server.log());
    let pristine = std::fs::read(server.data_path()).expect("read the database");
    let pages = pristine.len() as u64 / PAGE;

    let dir = tempfile::tempdir().expect("a temporary directory");
    // A fixed seed, so that the damaged files are the same on every run.
    let mut random = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let (mut damaged, mut unopenable) = (0, Vec::new());
    for copy in 0..COPIES {
        let mut bytes = pristine.clone();
        for _ in 0..RANGES_PER_COPY {
            let offset = usize::try_from(random.random::<u64>() % pages * PAGE).expect("fits");
            let noise: Vec<u8> = (0..32).map(|_| random.random()).collect();
            bytes[offset..offset + noise.len()].copy_from_slice(&noise);
        }
        if copy == 0 {
            // Which pages the ranges hit depends on where redb put the tables, which changes
            // with how the file was written. Damage in its header (the format version, at byte
            // 64) is one that redb reports rather than panics on, so at least one copy has it.
            bytes[64..96].copy_from_slice(&[0xb2; 32]);
        }
        // Two files: check may repair what it checks, and the server must meet the damage.
        let checked = dir.path().join(format!("checked-{copy}.redb"));
        let started = dir.path().join(format!("started-{copy}.redb"));
        std::fs::write(&checked, &bytes).expect("write a damaged copy");
        std::fs::write(&started, &bytes).expect("write a damaged copy");

        let output = check(&checked).await;
        let what = format!("check on copy {copy}");
        assert_no_panic(&what, &output);
        match output.status.code() {
            Some(0) => {}
            Some(1) => {
                damaged += 1;
                let stdout = lines(&output.stdout);
                assert_eq!(stdout.len(), 2, "{what}: the problem, then what to do: {stdout:?}");
                assert!(stdout[0].contains("damaged") && stdout[0].contains(utf8(&checked)));
                assert!(stdout[1].contains("backup"), "{what}: says to restore one: {stdout:?}");
                if stdout[0].contains("cannot be opened") {
                    // The storage's words for a panic of redb that it caught.
                    let panicked = stdout[0].contains("redb failed on damaged data");
                    unopenable.push((started, panicked));
                }
            }
            _ => panic!("{what}: exit 0 or 1 only: {}", describe(&output)),
        }
    }
    eprintln!(
        "{COPIES} damaged copies: {damaged} reported damaged, {} fail at open",
        unopenable.len()
    );
    assert!(damaged > 0, "no copy was reported damaged");
    // Both kinds of failure at open: damage redb reports, and damage it panics on (the panic
    // must not reach standard error).
    let reported = unopenable.iter().find(|(_, panicked)| !panicked);
    let caught = unopenable.iter().find(|(_, panicked)| *panicked);
    assert!(reported.is_some() && caught.is_some(), "both kinds at open: {unopenable:?}");

    for (started, _) in reported.into_iter().chain(caught) {
        let output = start_failing(started).await;
        let what = format!("the server on {}", started.display());
        assert_no_panic(&what, &output);
        assert_eq!(output.status.code(), Some(2), "{what}: {}", describe(&output));
        let stderr = lines(&output.stderr);
        assert_eq!(stderr.len(), 1, "{what}: exactly one line: {}", describe(&output));
        assert!(stderr[0].contains("damaged"), "{what}: says it is damaged: {stderr:?}");
        assert!(stderr[0].contains(utf8(started)), "{what}: names the file: {stderr:?}");
    }
}

#[tokio::test]
async fn another_start_up_failure_is_one_line_naming_each_cause_once_with_status_1() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = start_failing(dir.path()).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = lines(&output.stderr);
    assert_eq!(stderr.len(), 1, "one line: {}", describe(&output));
    let causes: Vec<&str> = stderr[0].split(": ").collect();
    for (index, cause) in causes.iter().enumerate() {
        assert!(
            !causes[index + 1..].iter().any(|later| later.contains(cause) || cause.contains(later)),
            "{cause:?} appears twice in {:?}",
            stderr[0]
        );
    }
    assert!(stderr[0].contains(utf8(dir.path())), "names the path: {:?}", stderr[0]);
}
