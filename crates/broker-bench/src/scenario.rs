//! The seven scenarios of the benchmark, their defaults, and the targets checked against
//! their figures.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::load::{self, Context};
use crate::plan::Load;
use crate::report::{Outcome, ScenarioResult, Verdict};
use crate::target::Target;

/// One benchmark scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// 64 publishers flat out, no subscribers: durable inserts per second.
    Insert,
    /// 1,000 subscribers, 1,000 inserts per second.
    #[value(name = "fanout-1k")]
    Fanout1k,
    /// 10,000 subscribers, 100 inserts per second (the same 1,000,000 deliveries per second
    /// offered as fanout-1k, over ten times the connections).
    #[value(name = "fanout-10k")]
    Fanout10k,
    /// As many idle subscribers as the file limit allows: memory per subscriber.
    Idle,
    /// 10,000 distinct events; a new subscriber's time to its full snapshot.
    Snapshot,
    /// Start-up on a database of 1,000,000 versions.
    Restart,
    /// The state at a past id or time (`GET /snapshot?at=`) on a database of 1,000,000
    /// versions, beside the current state and one event's whole history.
    Past,
    /// Every scenario above, in order.
    All,
}

impl Scenario {
    /// Whether publishers of the scenario may publish arrays (`--bulk`): those whose figures
    /// come from a load run with publishers.
    pub(crate) fn takes_bulk(self) -> bool {
        matches!(self, Scenario::Insert | Scenario::Fanout1k | Scenario::Fanout10k)
    }
}

/// What `all` runs. `past` is among them: it prepares its own 1,000,000 versions, as `restart`
/// does, which adds some seconds to a run of several minutes.
pub(crate) const ALL: [Scenario; 7] = [
    Scenario::Insert,
    Scenario::Fanout1k,
    Scenario::Fanout10k,
    Scenario::Idle,
    Scenario::Snapshot,
    Scenario::Restart,
    Scenario::Past,
];

/// Settings a command line may override; `None` keeps the scenario's default.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    pub(crate) subscribers: Option<usize>,
    pub(crate) publishers: Option<u32>,
    pub(crate) rate: Option<f64>,
    pub(crate) duration: Option<f64>,
    pub(crate) payload: usize,
    pub(crate) events: Option<u64>,
    pub(crate) versions: Option<u64>,
    pub(crate) repeats: Option<usize>,
    pub(crate) publisher_workers: Option<u32>,
    /// Publishers go as fast as acknowledgements come, whatever the scenario's rate.
    pub(crate) flat_out: bool,
    /// Publishers go to the first this many nodes of a server with several.
    pub(crate) publish_nodes: Option<usize>,
    /// Each publish is an array of this many versions (insert and fan-out scenarios).
    pub(crate) bulk: Option<usize>,
    /// Our server is run a second time with the event streams over this many HTTP/2
    /// connections (insert, fan-out and idle scenarios).
    pub(crate) h2_connections: Option<usize>,
}

/// The label of our server with the event streams over HTTP/2 (`--h2-connections`).
pub(crate) const H2_LABEL: &str = "ours-h2";
/// The most streams the load generator opens on one HTTP/2 connection: the server's default
/// `--h2-max-streams`, past which it refuses streams.
const H2_STREAMS_PER_CONNECTION: usize = 256;

/// Other processes may use at most this much of a core when a target's run starts…
const QUIET_PCT: f64 = 15.0;
/// …or the run starts anyway after this long, with a note.
const QUIET_PATIENCE: Duration = Duration::from_secs(120);

/// The most idle subscribers: a server process may open 20,000 files, and needs some for itself.
const IDLE_SUBSCRIBERS: usize = 19_000;

impl Scenario {
    /// Whether the scenario is a load run of subscribers and publishers.
    fn is_load(self) -> bool {
        matches!(self, Scenario::Insert | Scenario::Fanout1k | Scenario::Fanout10k | Scenario::Idle)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Insert => "insert",
            Scenario::Fanout1k => "fanout-1k",
            Scenario::Fanout10k => "fanout-10k",
            Scenario::Idle => "idle",
            Scenario::Snapshot => "snapshot",
            Scenario::Restart => "restart",
            Scenario::Past => "past",
            Scenario::All => "all",
        }
    }

    fn load(self, o: &Overrides) -> Load {
        let (subscribers, publishers, rate, duration, hold) = match self {
            Scenario::Insert => (0, 64, None, 10.0, 0.0),
            Scenario::Fanout1k => (1000, 64, Some(1000.0), 10.0, 0.0),
            Scenario::Fanout10k => (10_000, 64, Some(100.0), 10.0, 0.0),
            _ => (IDLE_SUBSCRIBERS, 0, None, 0.0, 5.0),
        };
        Load {
            subscribers: o.subscribers.unwrap_or(subscribers),
            publishers: if publishers == 0 { 0 } else { o.publishers.unwrap_or(publishers) },
            rate: if o.flat_out { None } else { o.rate.or(rate) },
            payload: o.payload,
            duration: Duration::from_secs_f64(if duration > 0.0 {
                o.duration.unwrap_or(duration)
            } else {
                0.0
            }),
            hold: Duration::from_secs_f64(hold),
            publisher_workers: o.publisher_workers.unwrap_or(1),
            publish_nodes: o.publish_nodes,
            bulk: o.bulk,
            h2_connections: None,
        }
    }

    /// What the scenario does, and its parameters, for the report.
    fn describe(self, o: &Overrides) -> (String, BTreeMap<String, String>) {
        let mut params = BTreeMap::new();
        params.insert("payload_bytes".to_owned(), o.payload.to_string());
        let text = match self {
            Scenario::Insert | Scenario::Fanout1k | Scenario::Fanout10k | Scenario::Idle => {
                let load = self.load(o);
                params.insert("subscribers".into(), load.subscribers.to_string());
                if load.publishers > 0 {
                    params.insert("publishers".into(), load.publishers.to_string());
                    let rate = load.rate.map_or("flat out".into(), |r| r.to_string());
                    params.insert("rate_per_s".into(), rate);
                    params.insert("duration_s".into(), load.duration.as_secs_f64().to_string());
                    if let Some(bulk) = load.bulk {
                        params.insert("versions_per_publish".into(), bulk.to_string());
                    }
                } else {
                    params.insert("hold_s".into(), load.hold.as_secs_f64().to_string());
                }
                match self {
                    Scenario::Insert => {
                        "insert throughput: concurrent publishers, no subscribers, durable inserts"
                    }
                    Scenario::Idle => {
                        "idle capacity: as many idle subscribers as the file limit allows"
                    }
                    _ if load.rate.is_none() => {
                        "fan-out capacity: subscribers on one event, publishers flat out"
                    }
                    _ => "fan-out: subscribers on one event, publishers at a fixed rate",
                }
            }
            Scenario::Snapshot => {
                params.insert("events".into(), o.events.unwrap_or(10_000).to_string());
                params.insert("repeats".into(), o.repeats.unwrap_or(20).to_string());
                "snapshot: a new subscriber's time to the latest version of every event"
            }
            Scenario::Restart => {
                params.insert("versions".into(), o.versions.unwrap_or(1_000_000).to_string());
                params.insert("events".into(), o.events.unwrap_or(1000).to_string());
                params.insert("repeats".into(), o.repeats.unwrap_or(5).to_string());
                "restart: from process start to serving, on a database of many versions"
            }
            Scenario::Past => {
                params.insert("versions".into(), o.versions.unwrap_or(1_000_000).to_string());
                params.insert("events".into(), o.events.unwrap_or(1000).to_string());
                params.insert("repeats".into(), o.repeats.unwrap_or(200).to_string());
                "past state: `/snapshot?at=` a random id or time, beside `/snapshot` (from \
                 memory) and one event's whole `/audit`, on a database of many versions"
            }
            Scenario::All => "",
        };
        (text.to_owned(), params)
    }

    /// Runs the scenario on each target in turn and prints its table.
    pub(crate) async fn run(
        self,
        ctx: &Context,
        targets: &[Target],
        o: &Overrides,
    ) -> ScenarioResult {
        let (description, params) = self.describe(o);
        let mut runs: Vec<(Target, &str, Option<usize>)> =
            targets.iter().map(|&target| (target, target.label(), None)).collect();
        if let Some(connections) = o.h2_connections
            && self.is_load()
            && let Some(at) = runs.iter().position(|run| run.0 == Target::Ours)
        {
            runs.insert(at + 1, (Target::Ours, H2_LABEL, Some(connections)));
        }
        let mut results = Vec::new();
        for (target, target_label, h2_connections) in runs {
            let label = format!("{} {}", self.name(), target_label);
            eprintln!("\n>> {label}");
            let noise = crate::procfs::wait_for_quiet(QUIET_PCT, QUIET_PATIENCE).await;
            let outcome = match self {
                Scenario::Snapshot => {
                    let events = o.events.unwrap_or(10_000);
                    crate::snapshot::run(ctx, target, events, o.repeats.unwrap_or(20), o.payload)
                        .await
                }
                Scenario::Restart => {
                    let versions = o.versions.unwrap_or(1_000_000);
                    let events = o.events.unwrap_or(1000);
                    let repeats = o.repeats.unwrap_or(5);
                    crate::restart::run(ctx, target, versions, events, repeats, o.payload).await
                }
                Scenario::Past => {
                    let versions = o.versions.unwrap_or(1_000_000);
                    let events = o.events.unwrap_or(1000);
                    let repeats = o.repeats.unwrap_or(200);
                    crate::past::run(ctx, target, versions, events, repeats, o.payload).await
                }
                _ => {
                    let load = Load { h2_connections, ..self.load(o) };
                    let per_connection =
                        h2_connections.map_or(0, |n| load.subscribers.div_ceil(n.max(1)));
                    if per_connection > H2_STREAMS_PER_CONNECTION {
                        Err(anyhow::anyhow!(
                            "{} subscribers over {} HTTP/2 connections is {per_connection} \
                             streams per connection, more than the server's {} by default",
                            load.subscribers,
                            h2_connections.unwrap_or(0),
                            H2_STREAMS_PER_CONNECTION
                        ))
                    } else {
                        load::run(ctx, &label, target, &load).await
                    }
                }
            };
            let mut outcome = outcome.unwrap_or_else(|error| {
                eprintln!("   {label} failed: {error:#}");
                Outcome { error: Some(format!("failed: {error:#}")), ..Outcome::default() }
            });
            if noise >= QUIET_PCT {
                outcome.note(format!(
                    "started while other processes used {noise:.0}% of a core (waited {QUIET_PATIENCE:?})"
                ));
            }
            if let Some(connections) = h2_connections {
                outcome.note(format!("event streams over {connections} HTTP/2 connections (h2c)"));
            }
            results.push((target_label.to_owned(), outcome));
        }
        ScenarioResult { scenario: self.name().to_owned(), description, params, results }
    }
}

/// Whether the target labelled `label` is a peer, not ours in some setup.
fn is_peer(label: &str) -> bool {
    let targets = <Target as clap::ValueEnum>::value_variants();
    targets.iter().any(|target| target.is_peer() && target.label() == label)
}

/// The targets, checked against whichever scenarios ran.
pub(crate) fn verdicts(results: &[ScenarioResult]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let find = |name: &str| results.iter().find(|result| result.scenario == name);
    let value = |result: &ScenarioResult, target: &str, key: &str| result.outcome(target)?.get(key);
    if let Some(result) = find("insert")
        && let (Some(ours), Some(nchan)) =
            (value(result, "ours", "inserts_per_s"), value(result, "nchan", "inserts_per_s"))
    {
        verdicts.push(Verdict {
            target: "durable inserts/s >= nchan's in-memory publishes/s".into(),
            met: ours >= nchan,
            detail: format!("ours {ours:.0}/s, nchan {nchan:.0}/s: {:.2}x", ours / nchan),
        });
    }
    for name in ["fanout-1k", "fanout-10k"] {
        let Some(result) = find(name) else { continue };
        let Some(ours) = value(result, "ours", "deliveries_per_s") else { continue };
        let peers: Vec<(&str, f64, Option<f64>)> = result
            .results
            .iter()
            .filter(|(label, _)| is_peer(label))
            .filter_map(|(label, outcome)| {
                Some((
                    label.as_str(),
                    outcome.get("deliveries_per_s")?,
                    outcome.get("delivery_p99_ms"),
                ))
            })
            .collect();
        if let Some(&(best, rate, _)) = peers.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            let offered = value(result, "ours", "offered_deliveries_per_s");
            let capped = offered.is_some_and(|offered| ours >= 0.97 * offered);
            let mut detail = format!("ours {ours:.0}/s, {best} {rate:.0}/s: {:.2}x", ours / rate);
            if capped {
                detail.push_str(
                    "; ours delivered all that was offered, so its capacity is higher than this \
                     (a --flat-out run measures it)",
                );
            }
            verdicts.push(Verdict {
                target: format!("{name}: deliveries/s >= 1.5x the better peer"),
                met: ours >= 1.5 * rate,
                detail,
            });
        }
        let ours_p99 = value(result, "ours", "delivery_p99_ms");
        let peer_p99: Vec<String> =
            peers.iter().filter_map(|(l, _, p)| Some(format!("{l} {:.2} ms", (*p)?))).collect();
        if let (Some(p99), false) = (ours_p99, peer_p99.is_empty()) {
            let below = peers.iter().all(|(_, _, p)| p.is_none_or(|p| p99 < p));
            verdicts.push(Verdict {
                target: format!("{name}: p99 delivery latency below both peers"),
                met: below,
                detail: format!("ours {p99:.2} ms; {}", peer_p99.join(", ")),
            });
        }
    }
    verdicts.extend(h2_verdicts(results));
    let absolute = [
        (
            "idle",
            "mem_per_sub_kib",
            8.0,
            "at most 8 KiB of server memory per idle subscriber",
            "KiB",
            true,
        ),
        (
            "snapshot",
            "snapshot_p50_ms",
            50.0,
            "snapshot of 10,000 events in under 50 ms (median)",
            "ms",
            false,
        ),
        (
            "restart",
            "startup_p50_ms",
            1000.0,
            "start-up with 1,000,000 versions under 1 s (median)",
            "ms",
            false,
        ),
        (
            "past",
            "past_at_id_p99_ms",
            50.0,
            "past state at an id, 1,000 events over 1,000,000 versions, under 50 ms (p99)",
            "ms",
            false,
        ),
        (
            "past",
            "past_at_time_p99_ms",
            50.0,
            "past state at a time, 1,000 events over 1,000,000 versions, under 50 ms (p99)",
            "ms",
            false,
        ),
    ];
    for (name, key, limit, target, unit, inclusive) in absolute {
        let Some(got) = find(name).and_then(|result| value(result, "ours", key)) else { continue };
        let met = if inclusive { got <= limit } else { got < limit };
        verdicts.push(Verdict {
            target: target.into(),
            met,
            detail: format!("ours {got:.2} {unit}: {:.2}x the limit", got / limit),
        });
    }
    verdicts
}

/// HTTP/2 beside HTTP/1.1 on our server (`--h2-connections`): deliveries per second at least
/// 0.8 times, memory per idle stream at most twice, HTTP/1.1's.
fn h2_verdicts(results: &[ScenarioResult]) -> Vec<Verdict> {
    let checks = [
        ("fanout-1k", "deliveries_per_s", 0.8, "deliveries/s", "/s"),
        ("fanout-10k", "deliveries_per_s", 0.8, "deliveries/s", "/s"),
        ("idle", "mem_per_sub_kib", 2.0, "memory per idle stream", " KiB"),
    ];
    let mut verdicts = Vec::new();
    for (name, key, limit, what, unit) in checks {
        let Some(result) = results.iter().find(|result| result.scenario == name) else { continue };
        let figure = |label| result.outcome(label).and_then(|outcome| outcome.get(key));
        let (Some(h1), Some(h2)) = (figure("ours"), figure(H2_LABEL)) else { continue };
        let ratio = h2 / h1;
        let (met, bound) = if limit < 1.0 {
            (ratio >= limit, format!(">= {limit}x"))
        } else {
            (ratio <= limit, format!("<= {limit}x"))
        };
        verdicts.push(Verdict {
            target: format!("{name}: {what} over HTTP/2 {bound} HTTP/1.1's"),
            met,
            detail: format!("h2 {h2:.2}{unit}, h1 {h1:.2}{unit}: {ratio:.2}x"),
        });
    }
    verdicts
}
