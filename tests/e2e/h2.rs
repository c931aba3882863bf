//! HTTP/2 over plain TCP (h2c with prior knowledge): every route, event streams included,
//! behaves as over HTTP/1.1, and the server holds its limits against HTTP/2 clients that
//! misbehave, each shown through a real socket.
//!
//! Well-behaved requests go through the `h2` crate's client ([`H2`]); what no such client
//! sends (more streams than allowed, streams reset as soon as they open, floods of control
//! frames) is written frame by frame (`support::frames`).

mod abuse;
mod routes;
mod streams;

use std::time::Duration;

use crate::support::{Metrics, Server};

/// Polls `/metrics` until `series` is at least `value`, for at most 5 s; returns the page.
async fn wait_for_metric(server: &Server, series: &str, value: f64) -> Metrics {
    let start = tokio::time::Instant::now();
    loop {
        let metrics = server.metrics().await;
        if metrics.value(series) >= value {
            return metrics;
        }
        let family = series.split('{').next().unwrap_or(series);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{series} is not at least {value}:\n{}",
            metrics.lines(family).join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
