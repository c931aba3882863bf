//! `broker-bench`: the load generator that measures the broker side by side with its peers.
//!
//! `cargo xtask bench SCENARIO…` builds everything and runs `broker-bench run SCENARIO…`: each
//! scenario runs on every target in turn (our `broker-server`, two of them over a NATS JetStream
//! cluster, nginx + nchan, broker 0.2.0), each server in its own process, the load in worker processes of this same binary
//! (`broker-bench worker`, at most 9,000 connections each), and prints one table per scenario
//! with the ratios, then writes everything as JSON. `docs/BENCHMARKS.md` describes the scenarios
//! and the figures.
//!
//! # Layout
//!
//! - `scenario.rs`: the seven scenarios, their defaults, the targets.
//! - `load.rs`: insert, fan-out and idle runs; `snapshot.rs`, `restart.rs`, `past.rs`: the other
//!   three;
//!   `plan.rs`: the shape of a load run and how it is shared out among workers and nodes.
//! - `fleet.rs`: worker processes as the coordinator sees them; `worker.rs`: a worker itself;
//!   `progress.rs`: what a worker reports.
//! - `reader.rs`, `sse.rs`, `http.rs`, `client.rs`: the wire, read with byte scanners;
//!   `h2c.rs`: event streams over HTTP/2 connections.
//! - `server.rs`, `target.rs`: starting each server, and its dialect of the protocol.
//! - `nats.rs`: the three-node NATS cluster under the `ours-nats` target's broker nodes.
//! - `payload.rs`, `clock.rs`, `hist.rs`: what a delivery carries and how its latency is kept.
//! - `monitor.rs`: CPU, memory and progress during a run; the bottleneck verdict.
//! - `procfs.rs`, `machine.rs`: memory, CPU and machine facts; `report.rs`, `chart.rs`: output.
//! - `prepare.rs`: a large store written directly through the storage crate.
//! - `netns.rs`: the loopback-only network namespace broker 0.2.0 must run in; `ports.rs`: free
//!   ports for the servers.

mod chart;
mod client;
mod clock;
mod fleet;
mod h2c;
mod hist;
mod http;
mod load;
mod machine;
mod monitor;
mod nats;
mod netns;
mod past;
mod payload;
mod plan;
mod ports;
mod prepare;
mod procfs;
mod progress;
mod reader;
mod report;
mod restart;
mod scenario;
mod server;
mod snapshot;
mod sse;
mod target;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::load::Context;
use crate::report::RunReport;
use crate::scenario::{Overrides, Scenario};
use crate::server::Programs;
use crate::target::Target;

/// Load generator and benchmark driver for the broker and its peers.
#[derive(Parser)]
#[command(name = "broker-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs scenarios on every target and prints tables; see docs/BENCHMARKS.md.
    Run(Box<RunArgs>),
    /// Writes a redb store of many versions through the storage crate.
    Prepare {
        /// The redb file to create or extend.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        versions: u64,
        #[arg(long, default_value_t = 1000)]
        events: u64,
        #[arg(long, default_value_t = 100)]
        payload: usize,
    },
    /// Draws the SVG chart of a JSON report.
    Chart {
        /// A report written by `run`.
        json: PathBuf,
        /// The SVG file to write.
        svg: PathBuf,
    },
    /// A load-generator process (started by `run`, not by hand).
    #[command(hide = true)]
    Worker { config: String },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenarios to run, in order.
    #[arg(required = true, value_enum)]
    scenarios: Vec<Scenario>,
    /// Servers to measure, each in turn (`ours-nats` is not among the defaults: it needs
    /// nats-server).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ours,nchan,broker")]
    targets: Vec<Target>,
    /// Subscribers (fan-out and idle scenarios).
    #[arg(long)]
    subscribers: Option<usize>,
    /// Publishers (insert and fan-out scenarios).
    #[arg(long)]
    publishers: Option<u32>,
    /// Inserts per second of all publishers together; without it, the scenario's default.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of publishing.
    #[arg(long)]
    duration: Option<f64>,
    /// Payload bytes of each insert.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Distinct events (snapshot, restart, past).
    #[arg(long)]
    events: Option<u64>,
    /// Stored versions (restart, past).
    #[arg(long)]
    versions: Option<u64>,
    /// Repetitions (snapshot, restart, past).
    #[arg(long)]
    repeats: Option<usize>,
    /// Publishers publish as fast as they are acknowledged, whatever the scenario's rate: a
    /// fan-out then measures the most deliveries per second a server makes.
    #[arg(long)]
    flat_out: bool,
    /// Each publish is an array of N versions of --payload bytes, stored in one commit
    /// (insert and fan-out scenarios; our server only: nchan and broker 0.2.0 have no such
    /// form). The report counts acknowledged versions per second; --rate counts arrays.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    bulk: Option<u64>,
    /// Also run each insert, fan-out and idle scenario on our server with the subscribers' event
    /// streams over HTTP/2 (h2c), spread over N connections in all, labelled `ours-h2`, right
    /// after the run over HTTP/1.1 (a connection per subscriber). At most 256 streams per
    /// connection, the server's default `--h2-max-streams`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    h2_connections: Option<u64>,
    /// Processes the publishers are spread over.
    #[arg(long)]
    publisher_workers: Option<u32>,
    /// Where the JSON report goes. Default: target/bench/SCENARIOS.json.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also draw the chart of the report into this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Our server's binary. Default: target/release/broker-server.
    #[arg(long)]
    broker_server: Option<PathBuf>,
    /// broker 0.2.0's binary. Default: target/peers/broker-0.2.0/target/release/broker-0_2_0.
    #[arg(long)]
    broker_0_2_0: Option<PathBuf>,
    /// nginx, with the nchan module installed.
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// The nchan configuration to adapt (a copy listens on a free port). Default:
    /// ../shared/peers/nchan.conf beside the workspace.
    #[arg(long)]
    nchan_conf: Option<PathBuf>,
    /// nats-server, for the `ours-nats` target.
    #[arg(long, default_value = "nats-server")]
    nats_server: PathBuf,
    /// How many broker nodes the `ours-nats` target runs over its NATS cluster.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    nodes: u16,
    /// Publishers go to the first N nodes of a target with several (`ours-nats`) and leave the
    /// others to follow the stream, whose CPU then is what following costs. Default: every node.
    #[arg(long)]
    publish_nodes: Option<usize>,
    /// Where servers keep their data during a run. Default: the system's temporary directory.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Worker { config } => worker::main(&config).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run(*args),
        Command::Prepare { data, versions, events, payload } => runtime().and_then(|runtime| {
            let took = runtime.block_on(prepare::fill(&data, versions, events, payload))?;
            eprintln!("prepared {versions} versions in {took:.2?}");
            Ok(ExitCode::SUCCESS)
        }),
        Command::Chart { json, svg } => draw(&json, &svg).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|error| {
        eprintln!("broker-bench: {error:#}");
        ExitCode::FAILURE
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// The workspace this binary was built from: the default place of every program and output.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.bulk.is_some() {
        if let Some(peer) = args.targets.iter().find(|target| !target.takes_arrays()) {
            anyhow::bail!(
                "--bulk publishes arrays of versions, which only our server takes; {peer} has no \
                 such form: run it with --targets ours (or ours-nats)"
            );
        }
        if let Some(other) = args.scenarios.iter().find(|scenario| !scenario.takes_bulk()) {
            anyhow::bail!(
                "--bulk applies to the insert and fan-out scenarios, not to {}",
                other.name()
            );
        }
    }
    if args.h2_connections.is_some()
        && let Some(other) = args.targets.iter().find(|&&target| target != Target::Ours)
    {
        anyhow::bail!(
            "--h2-connections opens event streams over h2c, which only our server is run with; \
             leave {other} out: --targets ours"
        );
    }
    if args.targets.contains(&Target::Broker) && !netns::inside() {
        return netns::reexec();
    }
    raise_open_files_limit();
    let root = workspace();
    let scenarios: Vec<Scenario> = args
        .scenarios
        .iter()
        .flat_map(|&s| if s == Scenario::All { scenario::ALL.to_vec() } else { vec![s] })
        .collect();
    let ctx = Context {
        exe: std::env::current_exe().context("cannot find this program")?,
        programs: Programs {
            broker_server: args
                .broker_server
                .unwrap_or_else(|| root.join("target/release/broker-server")),
            broker_0_2_0: args.broker_0_2_0.unwrap_or_else(|| {
                root.join("target/peers/broker-0.2.0/target/release/broker-0_2_0")
            }),
            nginx: args.nginx,
            nchan_conf: args.nchan_conf.unwrap_or_else(|| root.join("../shared/peers/nchan.conf")),
            nats_server: args.nats_server,
            broker_nodes: usize::from(args.nodes),
        },
        work_dir: args.work_dir.unwrap_or_else(std::env::temp_dir),
    };
    let overrides = Overrides {
        subscribers: args.subscribers,
        publishers: args.publishers,
        rate: args.rate,
        duration: args.duration,
        payload: args.payload,
        events: args.events,
        versions: args.versions,
        repeats: args.repeats,
        publisher_workers: args.publisher_workers,
        flat_out: args.flat_out,
        publish_nodes: args.publish_nodes,
        bulk: args.bulk.map(|bulk| usize::try_from(bulk).unwrap_or(usize::MAX)),
        h2_connections: args.h2_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let names: Vec<&str> = args.scenarios.iter().map(|s| s.name()).collect();
    let json =
        args.json.unwrap_or_else(|| root.join(format!("target/bench/{}.json", names.join("+"))));
    let mut report =
        RunReport { machine: machine::describe(), scenarios: Vec::new(), verdicts: Vec::new() };
    let runtime = runtime()?;
    for scenario in scenarios {
        let result = runtime.block_on(scenario.run(&ctx, &args.targets, &overrides));
        eprint!("{}", report::table(&result));
        report.scenarios.push(result);
        report.verdicts = scenario::verdicts(&report.scenarios);
        write_json(&json, &report)?;
    }
    println!(
        "\nmachine: {}",
        report.machine.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    );
    for result in &report.scenarios {
        print!("{}", report::table(result));
    }
    if !report.verdicts.is_empty() {
        println!("\ntargets:");
        for verdict in &report.verdicts {
            let mark = if verdict.met { "MET    " } else { "NOT MET" };
            println!("  {mark} {}: {}", verdict.target, verdict.detail);
        }
    }
    println!("\nJSON report: {}", json.display());
    if let Some(svg) = args.svg {
        draw(&json, &svg)?;
        println!("chart: {}", svg.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_json(path: &Path, report: &RunReport) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn draw(json: &Path, svg: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(json).with_context(|| format!("cannot read {}", json.display()))?;
    let report: RunReport = serde_json::from_slice(&text)?;
    std::fs::write(svg, chart::svg(&report))
        .with_context(|| format!("cannot write {}", svg.display()))
}

/// Raises the soft limit of open files to the hard one: every connection is a file.
pub(crate) fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
