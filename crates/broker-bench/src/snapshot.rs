//! The snapshot scenario: E distinct events exist; how long does a new subscriber wait until it
//! has the latest version of every one of them?

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::fleet::Fleet;
use crate::hist::Histogram;
use crate::load::Context;
use crate::reader::SseReader;
use crate::report::Outcome;
use crate::server::Server;
use crate::target::{Target, subscribe_request};
use crate::worker::{Events, PublisherPlan, WorkerConfig};

/// Publishers that fill the store.
const FILLERS: u32 = 64;
/// How long one subscriber may take for its snapshot before the attempt counts as failed.
const PATIENCE: Duration = Duration::from_secs(10);

/// Fills a fresh `target` with `events` distinct events, then times `repeats` new subscribers.
pub(crate) async fn run(
    ctx: &Context,
    target: Target,
    events: u64,
    repeats: usize,
    payload: usize,
) -> anyhow::Result<Outcome> {
    if target == Target::Nchan {
        return Ok(Outcome::not_applicable(
            "nchan has no stream of every channel: a subscriber names its channels (at most 255 \
             per connection) and gets each one's newest message, so there is no snapshot of \
             10,000 events to wait for",
        ));
    }
    let dir = tempfile::tempdir_in(&ctx.work_dir).context("create a data directory")?;
    let server = Server::start(target, &ctx.programs, dir.path(), 1000).await?;
    let outcome = measure(ctx, &server, events, repeats, payload).await;
    server.stop().await;
    outcome
}

async fn measure(
    ctx: &Context,
    server: &Server,
    events: u64,
    repeats: usize,
    payload: usize,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let filled = fill(ctx, server, events, payload).await?;
    outcome.set("fill_inserts_per_s", events as f64 / filled.as_secs_f64());
    outcome.set("rss_idle_mib", server.processes().rss_kib() as f64 / 1024.0);

    let request = subscribe_request(&server.target.subscribe_path(None));
    let mut full = Histogram::default();
    let mut first = Histogram::default();
    for attempt in 0..repeats {
        match time_snapshot(server, &request, events).await {
            Ok((first_frame, whole)) => {
                first.record(first_frame.as_nanos() as u64);
                full.record(whole.as_nanos() as u64);
            }
            Err(error) => {
                outcome.note(format!("attempt {}: {error:#}", attempt + 1));
                if attempt >= 2 && full.count() == 0 {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if full.count() > 0 {
        outcome.set("snapshot_first_ms", first.quantile(0.5) as f64 / 1e6);
        outcome.set("snapshot_p50_ms", full.quantile(0.5) as f64 / 1e6);
        outcome.set("snapshot_max_ms", full.max() as f64 / 1e6);
    }
    outcome.set("rss_peak_mib", server.processes().rss_kib() as f64 / 1024.0);
    outcome.note(format!("{} of {repeats} subscribers received all {events} events", full.count()));
    if server.target == Target::Broker && full.count() == 0 {
        outcome.note(
            "broker 0.2.0 queues a new subscriber's snapshot into a channel of 100 with \
             `try_send(..).unwrap()`: with more than 100 events its handler panics and the \
             connection closes before the response",
        );
    }
    Ok(outcome)
}

/// Inserts one version of each of `events` events with 64 publishers, flat out, and returns how
/// long that took.
pub(crate) async fn fill(
    ctx: &Context,
    server: &Server,
    events: u64,
    payload: usize,
) -> anyhow::Result<Duration> {
    let plan = PublisherPlan {
        addrs: server.addrs.clone(),
        first_id: 1,
        count: FILLERS,
        rate: None,
        payload,
        events: Events::Distinct { prefix: "e".into(), total: events, stride: FILLERS },
        bulk: None,
    };
    let config = WorkerConfig {
        addrs: server.addrs.clone(),
        target: server.target,
        source: Ipv4Addr::UNSPECIFIED,
        subscribers: 0,
        first_subscriber: 0,
        subscribe_path: String::new(),
        connect_parallel: 1,
        ready_on_head: false,
        publisher_ids: FILLERS,
        publishers: Some(plan),
        h2_connections: 0,
    };
    let mut fleet = Fleet::spawn(&ctx.exe, &[config])?;
    let started = Instant::now();
    fleet.command("start", true).await;
    let mut last_print = Instant::now();
    while fleet.total().acked < events {
        fleet.pump(Duration::from_millis(100)).await;
        if last_print.elapsed() > Duration::from_secs(1) {
            eprintln!("  [{}] filling: {} of {events} events", server.target, fleet.total().acked);
            last_print = Instant::now();
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "filling took over 300 s");
    }
    let took = started.elapsed();
    fleet.command("stop", true).await;
    fleet.finish().await;
    Ok(took)
}

/// Opens a subscriber and reads until `events` frames arrived: time to the first and to the last.
async fn time_snapshot(
    server: &Server,
    request: &[u8],
    events: u64,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let mut reader = SseReader::open(server.addr(), Ipv4Addr::LOCALHOST, request).await?;
    let mut frames = 0u64;
    let mut first = None;
    while frames < events {
        let read =
            tokio::time::timeout_at((started + PATIENCE).into(), reader.read(|_, _| frames += 1));
        let Ok(open) = read.await else {
            anyhow::bail!("only {frames} of {events} events within {PATIENCE:?}");
        };
        if frames > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if !open? {
            anyhow::bail!("the stream ended after {frames} of {events} events");
        }
    }
    Ok((first.unwrap_or_default(), started.elapsed()))
}
