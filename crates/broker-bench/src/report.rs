//! Results: what each scenario measured for each target, as a table and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What one scenario measured on one target.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Outcome {
    pub(crate) metrics: BTreeMap<String, f64>,
    pub(crate) notes: Vec<String>,
    pub(crate) error: Option<String>,
}

impl Outcome {
    pub(crate) fn set(&mut self, key: &str, value: f64) {
        self.metrics.insert(key.to_owned(), value);
    }

    pub(crate) fn get(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).copied()
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// A target on which the scenario cannot be run, and why.
    pub(crate) fn not_applicable(why: &str) -> Outcome {
        Outcome { notes: vec![format!("n/a: {why}")], ..Outcome::default() }
    }
}

/// One scenario across targets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ScenarioResult {
    pub(crate) scenario: String,
    pub(crate) description: String,
    pub(crate) params: BTreeMap<String, String>,
    /// By target label, in the order run.
    pub(crate) results: Vec<(String, Outcome)>,
}

impl ScenarioResult {
    pub(crate) fn outcome(&self, target: &str) -> Option<&Outcome> {
        self.results.iter().find(|(label, _)| label == target).map(|(_, outcome)| outcome)
    }
}

/// Everything one command measured, with the machine it ran on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RunReport {
    pub(crate) machine: BTreeMap<String, String>,
    pub(crate) scenarios: Vec<ScenarioResult>,
    pub(crate) verdicts: Vec<Verdict>,
}

/// One of the targets, checked against the figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Verdict {
    pub(crate) target: String,
    pub(crate) met: bool,
    pub(crate) detail: String,
}

/// How a metric reads: its label, and whether more is better (for the ratio columns).
pub(crate) struct Metric {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    pub(crate) higher_is_better: Option<bool>,
}

const fn metric(key: &'static str, label: &'static str, higher: Option<bool>) -> Metric {
    Metric { key, label, higher_is_better: higher }
}

/// Every metric, in table order.
pub(crate) const METRICS: &[Metric] = &[
    metric("inserts_per_s", "inserts/s (acknowledged)", Some(true)),
    metric("versions_per_s", "versions/s in arrays (acknowledged)", Some(true)),
    metric("requests_per_s", "arrays/s (acknowledged)", Some(true)),
    metric("insert_p50_ms", "insert latency p50 ms", Some(false)),
    metric("insert_p99_ms", "insert latency p99 ms", Some(false)),
    metric("insert_max_ms", "insert latency max ms", Some(false)),
    metric("offered_deliveries_per_s", "deliveries/s offered", None),
    metric("deliveries_per_s", "deliveries/s", Some(true)),
    metric("delivery_p50_ms", "delivery latency p50 ms", Some(false)),
    metric("delivery_p99_ms", "delivery latency p99 ms", Some(false)),
    metric("delivery_max_ms", "delivery latency max ms", Some(false)),
    metric("missed", "deliveries missed", Some(false)),
    metric("duplicated", "deliveries duplicated", Some(false)),
    metric("subscribers", "subscribers registered", None),
    metric("subscribers_failed", "subscribers refused/failed", Some(false)),
    metric("streams_closed", "streams closed by server", Some(false)),
    metric("connect_s", "time to register all subscribers s", Some(false)),
    metric("rss_idle_mib", "server RSS idle MiB", Some(false)),
    metric("rss_subs_mib", "server RSS with subscribers MiB", Some(false)),
    metric("rss_peak_mib", "server RSS peak MiB", Some(false)),
    metric("mem_per_sub_kib", "server memory per subscriber KiB", Some(false)),
    metric("fill_inserts_per_s", "inserts/s while filling", Some(true)),
    metric("snapshot_first_ms", "snapshot first frame p50 ms", Some(false)),
    metric("snapshot_p50_ms", "full snapshot p50 ms", Some(false)),
    metric("snapshot_max_ms", "full snapshot max ms", Some(false)),
    metric("versions", "stored versions", None),
    metric("db_mib", "database file MiB", None),
    metric("prepare_s", "time to prepare the database s", None),
    metric("startup_p50_ms", "start to first HTTP answer p50 ms", Some(false)),
    metric("startup_max_ms", "start to first HTTP answer max ms", Some(false)),
    metric("startup_snapshot_ms", "start to first snapshot byte p50 ms", Some(false)),
    metric("past_latest_p50_ms", "/snapshot (current, memory) p50 ms", Some(false)),
    metric("past_latest_p99_ms", "/snapshot (current, memory) p99 ms", Some(false)),
    metric("past_latest_max_ms", "/snapshot (current, memory) max ms", Some(false)),
    metric("past_at_id_p50_ms", "/snapshot?at=<id> p50 ms", Some(false)),
    metric("past_at_id_p99_ms", "/snapshot?at=<id> p99 ms", Some(false)),
    metric("past_at_id_max_ms", "/snapshot?at=<id> max ms", Some(false)),
    metric("past_at_time_p50_ms", "/snapshot?at=<time> p50 ms", Some(false)),
    metric("past_at_time_p99_ms", "/snapshot?at=<time> p99 ms", Some(false)),
    metric("past_at_time_max_ms", "/snapshot?at=<time> max ms", Some(false)),
    metric("past_audit_p50_ms", "/audit/{event}, whole history p50 ms", Some(false)),
    metric("past_audit_p99_ms", "/audit/{event}, whole history p99 ms", Some(false)),
    metric("past_audit_max_ms", "/audit/{event}, whole history max ms", Some(false)),
    metric("past_latest_kib", "/snapshot (current) answer KiB", None),
    metric("past_at_id_kib", "/snapshot?at=<id> answer KiB (mean)", None),
    metric("past_at_time_kib", "/snapshot?at=<time> answer KiB (mean)", None),
    metric("past_audit_kib", "/audit/{event} answer KiB (mean)", None),
    metric("rss_after_mib", "server RSS after the requests MiB", Some(false)),
    metric("server_cpu_pct", "server CPU % of one core", None),
    metric("storage_cpu_pct", "NATS servers CPU % of one core", None),
    metric("storage_rss_mib", "NATS servers RSS MiB", None),
    metric("server_cpu_us_per_insert", "server CPU µs per insert", Some(false)),
    metric("server_kernel_us_per_insert", "  of which in the kernel", Some(false)),
    metric("storage_cpu_us_per_insert", "NATS servers CPU µs per insert", Some(false)),
    metric("follower_cpu_us_per_insert", "CPU µs per insert of a node following", Some(false)),
    metric("server_cpu_ns_per_delivery", "server CPU ns per delivery", Some(false)),
    metric("loadgen_cpu_pct", "load generator CPU % of one core", None),
    metric("loadgen_busiest_pct", "busiest load-generator process %", None),
    metric("other_cpu_pct", "other processes CPU % (noise)", None),
];

/// Formats a figure for a table: few digits, thousands grouped.
pub(crate) fn figure(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1000.0 {
        let whole = value.round() as i64;
        let digits = whole.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if whole < 0 { format!("-{grouped}") } else { grouped }
    } else if abs >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else if abs >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The table of one scenario: a row per metric, a column per target, then ours ÷ each peer.
pub(crate) fn table(result: &ScenarioResult) -> String {
    let labels: Vec<&str> = result.results.iter().map(|(label, _)| label.as_str()).collect();
    let ours = result.outcome("ours");
    let peers: Vec<&str> = labels.iter().copied().filter(|&label| label != "ours").collect();
    let mut header = vec!["metric".to_owned()];
    header.extend(labels.iter().map(|label| (*label).to_owned()));
    if ours.is_some() {
        header.extend(peers.iter().map(|peer| format!("ours/{peer}")));
    }
    let mut rows = vec![header];
    for metric in METRICS {
        if !result.results.iter().any(|(_, outcome)| outcome.get(metric.key).is_some()) {
            continue;
        }
        let arrow = match metric.higher_is_better {
            Some(true) => " (↑)",
            Some(false) => " (↓)",
            None => "",
        };
        let mut row = vec![format!("{}{arrow}", metric.label)];
        for (_, outcome) in &result.results {
            row.push(outcome.get(metric.key).map_or_else(|| "-".to_owned(), figure));
        }
        if let Some(ours) = ours {
            for peer in &peers {
                let ratio = match (
                    ours.get(metric.key),
                    result.outcome(peer).and_then(|o| o.get(metric.key)),
                ) {
                    (Some(a), Some(b)) if b != 0.0 && metric.higher_is_better.is_some() => {
                        format!("{:.2}x", a / b)
                    }
                    _ => "-".to_owned(),
                };
                row.push(ratio);
            }
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "\n== {}: {}", result.scenario, result.description);
    let params: Vec<String> = result.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "   {}", params.join(" "));
    for (index, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                let pad = width - cell.chars().count();
                if column == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  "));
        if index == 0 {
            let _ = writeln!(
                out,
                "  {}",
                widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ")
            );
        }
    }
    for (label, outcome) in &result.results {
        for note in outcome.notes.iter().chain(outcome.error.iter()) {
            let _ = writeln!(out, "  {label}: {note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::figure;

    #[test]
    fn figures_are_short_and_grouped() {
        assert_eq!(figure(1_234_567.4), "1,234,567");
        assert_eq!(figure(123.4), "123");
        assert_eq!(figure(12.34), "12.3");
        assert_eq!(figure(1.234), "1.23");
        assert_eq!(figure(0.1234), "0.123");
        assert_eq!(figure(0.0), "0");
    }
}
