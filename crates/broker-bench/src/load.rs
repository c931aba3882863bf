//! The load runs behind the insert, fan-out and idle scenarios: a fresh server, S subscribers
//! over several worker processes, P publishers, and the figures they give. A server of several
//! nodes gets its subscribers and publishers in turn, node after node.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::clock::now_ns;
use crate::fleet::Fleet;
use crate::hist::Histogram;
use crate::monitor::{Cpu, Monitor, bottleneck};
use crate::payload::{self, Stamp, WARMUP};
use crate::plan::{EVENT, Load, worker_configs};
use crate::procfs::Processes;
use crate::progress::Progress;
use crate::report::Outcome;
use crate::server::{Programs, Server};
use crate::target::Target;

/// What a run needs from the command line.
pub(crate) struct Context {
    pub(crate) exe: PathBuf,
    pub(crate) programs: Programs,
    pub(crate) work_dir: PathBuf,
}

/// Runs `load` against a fresh `target` and measures it.
pub(crate) async fn run(
    ctx: &Context,
    label: &str,
    target: Target,
    load: &Load,
) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir_in(&ctx.work_dir).context("create a data directory")?;
    let server = Server::start(target, &ctx.programs, dir.path(), load.subscribers + 1000).await?;
    let outcome = measure(ctx, label, &server, load).await;
    server.stop().await;
    outcome
}

async fn measure(
    ctx: &Context,
    label: &str,
    server: &Server,
    load: &Load,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    // The warm-up version: what a new subscriber receives first, proof that it is registered
    // (broker 0.2.0 does not even register a subscriber while its store is empty).
    publish_warmup(server).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let processes = server.processes();
    let nodes = server.nodes();
    let storage = server.storage_processes().unwrap_or_default();
    let rss_idle = processes.rss_kib();
    outcome.set("rss_idle_mib", rss_idle as f64 / 1024.0);

    let configs = worker_configs(server.target, &server.addrs, load);
    let mut fleet = Fleet::spawn(&ctx.exe, &configs)?;
    let mut monitor = Monitor::new(label, processes.clone(), &fleet);

    // Phase 1: every subscriber connects and receives the warm-up version.
    let started = Instant::now();
    let deadline = Duration::from_secs(60) + Duration::from_millis(load.subscribers as u64 * 5);
    loop {
        fleet.pump(Duration::from_millis(100)).await;
        let total = fleet.total();
        monitor.tick(&fleet, "connecting", &total);
        if total.ready + total.failed + total.closed >= load.subscribers as u64 {
            break;
        }
        if started.elapsed() > deadline {
            outcome.note(format!(
                "only {} of {} subscribers registered within {deadline:?}",
                total.ready, load.subscribers
            ));
            break;
        }
    }
    let registered = fleet.total();
    if load.subscribers > 0 {
        outcome.set("connect_s", started.elapsed().as_secs_f64());
        outcome.set("subscribers", registered.ready as f64);
        outcome.set("subscribers_failed", registered.failed as f64);
    }
    if !load.hold.is_zero() {
        let until = Instant::now() + load.hold;
        while Instant::now() < until {
            fleet.pump(Duration::from_millis(250)).await;
            monitor.tick(&fleet, "holding", &fleet.total());
        }
    } else if load.subscribers > 0 {
        fleet.pump(Duration::from_secs(1)).await;
    }
    let rss_subs = processes.rss_kib();
    if load.subscribers > 0 {
        outcome.set("rss_subs_mib", rss_subs as f64 / 1024.0);
        let per = (rss_subs.saturating_sub(rss_idle)) as f64 / registered.ready.max(1) as f64;
        outcome.set("mem_per_sub_kib", per);
    }

    // Phase 2: publish for the duration, then let deliveries drain.
    let cpu_start = Cpu::read(&processes, &fleet);
    let nodes_start: Vec<f64> = nodes.iter().map(Processes::cpu_seconds).collect();
    let storage_start = storage.cpu_seconds();
    let start_ns = now_ns();
    let publishing = load.duration > Duration::ZERO && load.publishers > 0;
    if publishing {
        fleet.command("start", true).await;
        let until = Instant::now() + load.duration;
        while Instant::now() < until {
            fleet.pump(Duration::from_millis(100)).await;
            monitor.tick(&fleet, "publishing", &fleet.total());
        }
        fleet.command("stop", true).await;
        loop {
            fleet.pump(Duration::from_millis(50)).await;
            if fleet.total().publishing == 0 {
                break;
            }
        }
    }
    // Requests in flight when publishing stopped were sent within the duration, so the
    // duration is the denominator of the insert rate.
    let published_ns =
        if publishing { load.duration.as_nanos() as u64 } else { now_ns() - start_ns };
    let acked = fleet.total().acked;
    let expected = acked * registered.ready;
    let mut last_change = Instant::now();
    let mut last_unique = fleet.total().unique;
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    if load.subscribers > 0 && publishing {
        loop {
            fleet.pump(Duration::from_millis(100)).await;
            let total = fleet.total();
            monitor.tick(&fleet, "draining", &total);
            if total.unique >= expected || Instant::now() > drain_deadline {
                break;
            }
            if total.unique != last_unique {
                last_unique = total.unique;
                last_change = Instant::now();
            } else if last_change.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
    }
    let window_ns = now_ns() - start_ns;
    let cpu_end = Cpu::read(&processes, &fleet);
    let nodes_cpu: Vec<f64> =
        nodes.iter().zip(&nodes_start).map(|(node, start)| node.cpu_seconds() - start).collect();
    let storage_cpu = storage.cpu_seconds() - storage_start;
    let rss_peak = monitor.peak_rss_kib.max(processes.rss_kib());
    let finals = fleet.finish().await;

    let mut insert = Histogram::default();
    let mut delivery = Histogram::default();
    let mut totals = Progress::default();
    for last in &finals {
        insert.merge(&last.insert);
        delivery.merge(&last.delivery);
        totals.unique += last.progress.unique;
        totals.duplicates += last.progress.duplicates;
        totals.closed += last.progress.closed;
        totals.publish_errors += last.progress.publish_errors;
        totals.last_delivery_ns = totals.last_delivery_ns.max(last.progress.last_delivery_ns);
        if totals.first_error.is_none() {
            totals.first_error.clone_from(&last.progress.first_error);
        }
    }
    if publishing {
        let per_second = acked as f64 / (published_ns as f64 / 1e9);
        match load.bulk {
            // Acknowledged versions, of arrays of `bulk`: the figure to set beside single
            // inserts per second, and the requests that carried them.
            Some(bulk) => {
                outcome.set("versions_per_s", per_second);
                outcome.set("requests_per_s", per_second / bulk as f64);
                outcome.note(format!(
                    "each publish is an array of {bulk} versions, stored in one commit; insert \
                     latency is per array, CPU per insert is per version"
                ));
            }
            None => outcome.set("inserts_per_s", per_second),
        }
        outcome.set("insert_p50_ms", ms(insert.quantile(0.5)));
        outcome.set("insert_p99_ms", ms(insert.quantile(0.99)));
        outcome.set("insert_max_ms", ms(insert.max()));
        if totals.publish_errors > 0 {
            outcome.note(format!("{} publishes failed and were retried", totals.publish_errors));
        }
    }
    if publishing && load.subscribers > 0 {
        if let Some(rate) = load.rate {
            // The rate counts requests; each carries `bulk` versions, each delivered to all.
            let versions = rate * load.bulk.unwrap_or(1) as f64;
            outcome.set("offered_deliveries_per_s", versions * load.subscribers as f64);
        }
        let span_ns = totals.last_delivery_ns.saturating_sub(start_ns).max(1);
        outcome.set("deliveries_per_s", totals.unique as f64 / (span_ns as f64 / 1e9));
        outcome.set("delivery_p50_ms", ms(delivery.quantile(0.5)));
        outcome.set("delivery_p99_ms", ms(delivery.quantile(0.99)));
        outcome.set("delivery_max_ms", ms(delivery.max()));
        outcome.set("missed", expected.saturating_sub(totals.unique) as f64);
        outcome.set("duplicated", totals.duplicates as f64);
        outcome.note(format!(
            "{acked} versions acknowledged x {} subscribers = {expected} deliveries expected, {} received",
            registered.ready, totals.unique
        ));
    }
    if load.subscribers > 0 {
        outcome.set("streams_closed", totals.closed as f64);
    }
    outcome.set("rss_peak_mib", rss_peak as f64 / 1024.0);
    if let Some(error) = totals.first_error {
        outcome.note(format!("first error: {error}"));
    }

    let seconds = window_ns as f64 / 1e9;
    let server_pct = (cpu_end.server - cpu_start.server) / seconds * 100.0;
    let loadgen_pct = (cpu_end.loadgen() - cpu_start.loadgen()) / seconds * 100.0;
    let busiest = cpu_end
        .workers
        .iter()
        .zip(&cpu_start.workers)
        .map(|(end, start)| (end - start) / seconds * 100.0)
        .fold(0.0, f64::max);
    outcome.set("server_cpu_pct", server_pct);
    outcome.set("loadgen_cpu_pct", loadgen_pct);
    outcome.set("loadgen_busiest_pct", busiest);
    let storage_pct = storage_cpu / seconds * 100.0;
    if !storage.0.is_empty() {
        outcome.set("storage_cpu_pct", storage_pct);
        outcome.set("storage_rss_mib", storage.rss_kib() as f64 / 1024.0);
    }
    let machine_pct = (cpu_end.machine - cpu_start.machine) / seconds * 100.0;
    let ours_pct = server_pct + storage_pct + loadgen_pct;
    outcome.set("other_cpu_pct", (machine_pct - ours_pct).max(0.0));
    let server_cpu = ServerCpu {
        total: cpu_end.server - cpu_start.server,
        kernel: cpu_end.server_kernel - cpu_start.server_kernel,
    };
    costs(&mut outcome, server_cpu, storage_cpu, acked, totals.unique);
    if !storage.0.is_empty() {
        let plural = if nodes.len() == 1 { "" } else { "s" };
        outcome.note(format!("{} broker node{plural} over 3 NATS servers", nodes.len()));
    }
    if nodes.len() > 1 {
        let each: Vec<String> =
            nodes_cpu.iter().map(|cpu| format!("{:.0}%", cpu / seconds * 100.0)).collect();
        outcome.note(format!("CPU of each node: {}", each.join(", ")));
        // The nodes no publisher sent to only follow the stream: their CPU per insert is what
        // following costs a node, whatever node took the insert.
        let publishing_nodes = load.publish_nodes.unwrap_or(nodes.len()).clamp(1, nodes.len());
        let followers = &nodes_cpu[publishing_nodes..];
        if !followers.is_empty() && acked > 0 && load.subscribers == 0 {
            let mean = followers.iter().sum::<f64>() / followers.len() as f64;
            outcome.set("follower_cpu_us_per_insert", mean / acked as f64 * 1e6);
        }
    }
    let offered_met = match load.rate {
        Some(rate) if publishing => {
            let achieved = acked as f64 / (published_ns as f64 / 1e9);
            let delivered = expected == 0 || totals.unique >= expected;
            achieved >= 0.97 * rate * load.bulk.unwrap_or(1) as f64 && delivered
        }
        _ => !publishing,
    };
    // The NATS servers count as the server's side: they are its storage.
    let verdict = bottleneck(server_pct + storage_pct, loadgen_pct, busiest, offered_met);
    outcome.note(format!("bottleneck: {verdict}"));
    Ok(outcome)
}

/// The CPU seconds the server used while publishing, and the kernel's part of them.
struct ServerCpu {
    total: f64,
    kernel: f64,
}

/// CPU per unit of work: per acknowledged insert (the server's, with the kernel's part of it, and
/// its storage's when that is other processes) and, with subscribers, per delivery, which then
/// includes the inserts' share.
fn costs(outcome: &mut Outcome, server: ServerCpu, storage_cpu: f64, acked: u64, delivered: u64) {
    if acked == 0 {
        return;
    }
    let server_cpu = server.total;
    outcome.set("server_cpu_us_per_insert", server_cpu / acked as f64 * 1e6);
    outcome.set("server_kernel_us_per_insert", server.kernel / acked as f64 * 1e6);
    if storage_cpu > 0.0 {
        outcome.set("storage_cpu_us_per_insert", storage_cpu / acked as f64 * 1e6);
    }
    if delivered > 0 {
        outcome.set("server_cpu_ns_per_delivery", server_cpu / delivered as f64 * 1e9);
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Publishes the warm-up version (publisher 0) and checks that it was acknowledged.
async fn publish_warmup(server: &Server) -> anyhow::Result<()> {
    let mut payload = Vec::new();
    payload::build(&mut payload, Stamp { publisher: WARMUP, seq: 0, sent_ns: now_ns() }, 100);
    let mut request = Vec::new();
    server.target.publish_request(EVENT, &payload, &mut request);
    let mut client = crate::client::Client::new(server.addr(), Ipv4Addr::UNSPECIFIED);
    let status = client.request(&request).await.context("warm-up publish")?;
    anyhow::ensure!(server.target.published(status), "warm-up publish answered {status}");
    Ok(())
}
