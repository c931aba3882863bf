//! The SVG chart of a report: one small bar chart per headline figure, every target side by side.
//!
//! Hand-written SVG, no plotting library: each panel scales to its own largest value, and a
//! dashed line marks the issue's absolute target where there is one.

use std::fmt::Write as _;

use crate::report::{RunReport, figure};

struct Panel {
    scenario: &'static str,
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    limit: Option<f64>,
}

const PANELS: &[Panel] = &[
    Panel {
        scenario: "insert",
        key: "inserts_per_s",
        title: "Inserts/s, 64 publishers (↑ better)",
        unit: "/s",
        limit: None,
    },
    Panel {
        scenario: "fanout-1k",
        key: "deliveries_per_s",
        title: "Deliveries/s, 1k subscribers (↑ better)",
        unit: "/s",
        limit: None,
    },
    Panel {
        scenario: "fanout-10k",
        key: "deliveries_per_s",
        title: "Deliveries/s, 10k subscribers (↑ better)",
        unit: "/s",
        limit: None,
    },
    Panel {
        scenario: "fanout-1k",
        key: "delivery_p99_ms",
        title: "p99 delivery latency, 1k subscribers (↓ better)",
        unit: " ms",
        limit: None,
    },
    Panel {
        scenario: "fanout-10k",
        key: "delivery_p99_ms",
        title: "p99 delivery latency, 10k subscribers (↓ better)",
        unit: " ms",
        limit: None,
    },
    Panel {
        scenario: "idle",
        key: "mem_per_sub_kib",
        title: "Server memory per idle subscriber (target ≤ 8 KiB)",
        unit: " KiB",
        limit: Some(8.0),
    },
    Panel {
        scenario: "snapshot",
        key: "snapshot_p50_ms",
        title: "Full snapshot of 10,000 events, p50 (target < 50 ms)",
        unit: " ms",
        limit: Some(50.0),
    },
    Panel {
        scenario: "restart",
        key: "startup_p50_ms",
        title: "Start-up to first answer, p50 (target < 1 s at 1,000,000 versions)",
        unit: " ms",
        limit: Some(1000.0),
    },
];

const WIDTH: f64 = 980.0;
const COLUMN: f64 = 490.0;
const LABEL: f64 = 100.0;
const BAR: f64 = 270.0;
const ROW: f64 = 24.0;

fn color(target: &str) -> &'static str {
    match target {
        "ours" => "#2f6fde",
        "ours-nats" => "#8fb0ec",
        "nchan" => "#e07b28",
        _ => "#5f8f2f",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The chart of `report`, as an SVG document.
pub(crate) fn svg(report: &RunReport) -> String {
    let panels: Vec<&Panel> = PANELS
        .iter()
        .filter(|panel| report.scenarios.iter().any(|s| s.scenario == panel.scenario))
        .collect();
    let targets: Vec<String> = report
        .scenarios
        .iter()
        .flat_map(|s| s.results.iter().map(|(label, _)| label.clone()))
        .fold(Vec::new(), |mut all, label| {
            if !all.contains(&label) {
                all.push(label);
            }
            all
        });
    let panel_height = 34.0 + ROW * targets.len() as f64 + 16.0;
    let rows = panels.len().div_ceil(2);
    let height = 60.0 + panel_height * rows as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let cpu = report.machine.get("cpu").map_or("", String::as_str);
    let cores = report.machine.get("nproc").map_or("", String::as_str);
    let _ = writeln!(
        out,
        r#"<text x="16" y="26" font-size="16" font-weight="bold">broker benchmarks: ours vs nchan vs broker 0.2.0, same run, same machine</text>"#
    );
    let _ = writeln!(
        out,
        r##"<text x="16" y="44" fill="#555555">{} cores, {}; servers and load generator share the cores</text>"##,
        escape(cores),
        escape(cpu)
    );
    for (index, panel) in panels.iter().enumerate() {
        let x = 16.0 + COLUMN * (index % 2) as f64;
        let y = 60.0 + panel_height * (index / 2) as f64;
        draw_panel(&mut out, report, panel, &targets, x, y);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_panel(
    out: &mut String,
    report: &RunReport,
    panel: &Panel,
    targets: &[String],
    x: f64,
    y: f64,
) {
    let result = report.scenarios.iter().find(|s| s.scenario == panel.scenario);
    let values: Vec<Option<f64>> = targets
        .iter()
        .map(|target| result.and_then(|r| r.outcome(target)).and_then(|o| o.get(panel.key)))
        .collect();
    let scale = values.iter().flatten().copied().chain(panel.limit).fold(0.0, f64::max).max(1e-9);
    let mut title = panel.title.to_owned();
    let rate = result.and_then(|r| r.params.get("rate_per_s"));
    if let Some(rate) = rate.filter(|_| panel.scenario.starts_with("fanout")) {
        let rate =
            if rate == "flat out" { "flat out".to_owned() } else { format!("{rate} inserts/s") };
        title = title.replacen(" (", &format!(", {rate} ("), 1);
    }
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{}" font-weight="bold">{}</text>"#,
        y + 16.0,
        escape(&title)
    );
    for (row, (target, value)) in targets.iter().zip(&values).enumerate() {
        let outcome = result.and_then(|r| r.outcome(target));
        let top = y + 28.0 + ROW * row as f64;
        let _ = writeln!(out, r#"<text x="{x}" y="{}">{}</text>"#, top + 14.0, escape(target));
        let bar_x = x + LABEL;
        match value {
            Some(value) => {
                let width = (value / scale * BAR).max(1.0);
                let _ = writeln!(
                    out,
                    r#"<rect x="{bar_x}" y="{top}" width="{width:.1}" height="{}" fill="{}"/>"#,
                    ROW - 6.0,
                    color(target)
                );
                // Start-up depends on the size of the store, which differs for broker 0.2.0.
                let versions = outcome
                    .and_then(|o| o.get("versions"))
                    .filter(|_| panel.scenario == "restart")
                    .map_or(String::new(), |v| format!(" ({} versions)", figure(v)));
                let _ = writeln!(
                    out,
                    r#"<text x="{:.1}" y="{}">{}{}{versions}</text>"#,
                    bar_x + width + 6.0,
                    top + 14.0,
                    figure(*value),
                    panel.unit
                );
            }
            None => {
                let not_applicable =
                    outcome.is_none_or(|o| o.notes.iter().any(|note| note.starts_with("n/a")));
                let text = if not_applicable { "n/a" } else { "failed (see the table)" };
                let _ = writeln!(
                    out,
                    r##"<text x="{bar_x}" y="{}" fill="#888888">{text}</text>"##,
                    top + 14.0
                );
            }
        }
    }
    if let Some(limit) = panel.limit {
        let line_x = x + LABEL + limit / scale * BAR;
        let bottom = y + 28.0 + ROW * targets.len() as f64;
        let _ = writeln!(
            out,
            r##"<line x1="{line_x:.1}" y1="{}" x2="{line_x:.1}" y2="{bottom}" stroke="#cc0000" stroke-dasharray="4,3"/>"##,
            y + 24.0
        );
    }
}
