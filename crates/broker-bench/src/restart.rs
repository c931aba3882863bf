//! The restart scenario: how long from starting the server on a database of many versions until
//! it serves, and until a new subscriber gets the first byte of its snapshot.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::hist::Histogram;
use crate::load::Context;
use crate::reader::SseReader;
use crate::report::Outcome;
use crate::server::Server;
use crate::target::{Target, subscribe_request};

/// How many versions broker 0.2.0 gets, through its own API: it keeps at most one version per
/// event and second, so a million cannot be made through it.
const PEER_VERSIONS: u64 = 20_000;

/// Prepares a store of `versions` versions over `events` events, then starts `target` on it
/// `repeats` times.
pub(crate) async fn run(
    ctx: &Context,
    target: Target,
    versions: u64,
    events: u64,
    repeats: usize,
    payload: usize,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let dir = tempfile::tempdir_in(&ctx.work_dir).context("create a data directory")?;
    match target {
        Target::Nchan => {
            return Ok(Outcome::not_applicable(
                "nchan keeps messages in shared memory only; nothing is stored across a restart",
            ));
        }
        Target::OursNats => {
            return Ok(Outcome::not_applicable(
                "its database is a NATS stream, which this scenario does not prepare; a node \
                 restarts onto a stream that stays up",
            ));
        }
        Target::Ours => {
            let db = dir.path().join("b.redb");
            let took = crate::prepare::fill(&db, versions, events, payload).await?;
            outcome.set("prepare_s", took.as_secs_f64());
            outcome.set("versions", versions as f64);
            outcome.set("db_mib", std::fs::metadata(&db)?.len() as f64 / (1024.0 * 1024.0));
        }
        Target::Broker => {
            let server = Server::start(target, &ctx.programs, dir.path(), 1000).await?;
            let started = Instant::now();
            let filled = crate::snapshot::fill(ctx, &server, PEER_VERSIONS, payload).await;
            server.stop().await;
            filled?;
            outcome.set("prepare_s", started.elapsed().as_secs_f64());
            outcome.set("versions", PEER_VERSIONS as f64);
            outcome.note(format!(
                "{PEER_VERSIONS} inserts of distinct events through its API: it keeps one version \
                 per event and second, so 1,000,000 versions cannot be made through it"
            ));
        }
    }
    let mut startup = Histogram::default();
    let mut first_byte = Histogram::default();
    let request = subscribe_request(&target.subscribe_path(None));
    for _ in 0..repeats {
        let server = Server::start(target, &ctx.programs, dir.path(), 1000).await?;
        startup.record(server.startup.as_nanos() as u64);
        match first_frame(&server, &request).await {
            Ok(()) => first_byte.record(server.spawned.elapsed().as_nanos() as u64),
            Err(error) if !outcome.notes.iter().any(|n| n.starts_with("snapshot")) => {
                outcome.note(format!("snapshot after start: {error:#}"));
            }
            Err(_) => {}
        }
        outcome.set("rss_idle_mib", server.processes().rss_kib() as f64 / 1024.0);
        server.stop().await;
    }
    outcome.set("startup_p50_ms", startup.quantile(0.5) as f64 / 1e6);
    outcome.set("startup_max_ms", startup.max() as f64 / 1e6);
    if first_byte.count() > 0 {
        outcome.set("startup_snapshot_ms", first_byte.quantile(0.5) as f64 / 1e6);
    }
    Ok(outcome)
}

/// Opens a subscriber to every event and waits for its first frame.
async fn first_frame(server: &Server, request: &[u8]) -> anyhow::Result<()> {
    let mut reader = SseReader::open(server.addr(), Ipv4Addr::LOCALHOST, request).await?;
    let mut got = false;
    while !got {
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read(|_, _| got = true));
        if !read.await.context("no snapshot within 10 s")?? {
            anyhow::bail!("the stream ended before its first frame");
        }
    }
    Ok(())
}
