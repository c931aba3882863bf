//! Damaged files: copies of a database with random 32-byte ranges overwritten at page-aligned
//! offsets. Whatever the damage, opening and reading either succeed or say the data is corrupt,
//! never panic and never pass it off as another failure; and `check` finds the damage that reads
//! met.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use broker_storage::{NewVersion, Storage, StorageError, Version};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{fill, open, temp_dir};
use crate::RedbStorage;

/// redb's page size.
const PAGE: u64 = 4096;

const EVENTS: [&str; 7] = ["user", "order", "price", "stock", "news", "alert", "clock"];

/// What a damaged copy did when opened and read.
#[derive(Debug, Default)]
struct Outcome {
    opened: bool,
    /// Some read (or the open) failed as corrupt.
    failed: bool,
}

/// Accepts `Ok` or [`StorageError::Corrupt`], naming `call` in the failure of anything else.
fn corrupt_or_ok<T>(result: Result<T, StorageError>, call: &str, outcome: &mut Outcome) {
    match result {
        Ok(_) => {}
        Err(StorageError::Corrupt(message)) => {
            assert!(!message.is_empty(), "{call}: a corruption says what is damaged");
            outcome.failed = true;
        }
        Err(error) => panic!("{call} fails only as corrupt on a damaged file: {error:?}"),
    }
}

/// Opens the copy at `path`, reads everything through every method, and closes it.
async fn open_and_read(path: &Path) -> Outcome {
    let mut outcome = Outcome::default();
    let store = match RedbStorage::open(path).await {
        Ok(store) => store,
        Err(StorageError::Corrupt(message)) => {
            assert!(message.contains(&path.display().to_string()), "names the file: {message}");
            assert!(message.contains("is damaged"), "says it is damaged: {message}");
            outcome.failed = true;
            return outcome;
        }
        Err(error) => panic!("opening a damaged file fails only as corrupt: {error:?}"),
    };
    outcome.opened = true;
    corrupt_or_ok(store.latest().await, "latest", &mut outcome);
    corrupt_or_ok(store.since(0, usize::MAX).await, "since", &mut outcome);
    corrupt_or_ok(store.since(500, 100).await, "since 500", &mut outcome);
    for event in EVENTS {
        corrupt_or_ok(store.history(event, 0, usize::MAX).await, "history", &mut outcome);
    }
    // Closing a damaged file may fail; it must not panic.
    let _ = store.close().await;
    outcome
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_files_open_and_read_or_say_they_are_corrupt_and_check_finds_the_damage() {
    let dir = temp_dir();
    let pristine = dir.path().join("pristine.redb");
    let store = open(&pristine).await;
    let stored: Vec<Version> = fill(&store, &EVENTS, 3_000, 100).await;
    // Long data spreads versions over overflow pages too.
    store
        .append(vec![NewVersion::new("user", 1, format!("\"{}\"", "z".repeat(20_000)))])
        .await
        .expect("append");
    store.close().await.expect("close");

    let report = RedbStorage::check(&pristine).await.expect("check");
    assert!(report.is_clean(), "an undamaged file is clean: {report}");
    assert_eq!(report.versions, stored.len() as u64 + 1);
    assert_eq!(report.events, EVENTS.len() as u64);
    assert_eq!(report.last_id, stored.len() as u64 + 1);
    assert!(report.database_id.is_some());

    let pages = std::fs::metadata(&pristine).expect("stat").len() / PAGE;
    // A fixed seed, so that the damaged files are the same on every run.
    let mut random = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let (mut opened, mut failed) = (0, 0);
    for copy in 0..30 {
        let path = dir.path().join(format!("damaged-{copy}.redb"));
        std::fs::copy(&pristine, &path).expect("copy");
        let offset = random.random::<u64>() % pages * PAGE;
        let noise: Vec<u8> = (0..32).map(|_| random.random()).collect();
        let file = OpenOptions::new().write(true).open(&path).expect("open the copy");
        file.write_all_at(&noise, offset).expect("damage the copy");
        drop(file);

        let outcome = open_and_read(&path).await;
        opened += usize::from(outcome.opened);
        failed += usize::from(outcome.failed);
        let report = RedbStorage::check(&path).await.expect("check a damaged copy");
        if outcome.failed {
            assert!(
                !report.is_clean(),
                "copy {copy} (page {}): reads failed, and check must say why: {report}",
                offset / PAGE
            );
        }
    }
    // Not an assertion, since which pages the damage hits is a matter of chance: a record of how
    // the copies fared, for whoever reads the test's output.
    println!("30 damaged copies: {opened} opened, {failed} failed as corrupt in open or reads");
}
