//! Broker nodes over a NATS JetStream stream: [`Server::node`] starts one on a [`NatsCluster`],
//! and [`Server::insert_once`] sends one insert with an `Idempotency-Key` and a bound on the
//! answer, as a client that retries after failures does.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{NatsCluster, Reply, Server};

/// How long one insert may take to be answered, even while the stream elects a leader or has
/// lost its quorum: SCALING.md promises an answer within about 20 s at worst (5 s waiting for
/// its turn, then an append retried for 8 s plus its requests), never a hang.
pub const INSERT_BOUND: Duration = Duration::from_secs(20);

impl Server {
    /// Starts a broker node on `stream` of `cluster`.
    pub async fn node(cluster: &NatsCluster, stream: &str) -> Server {
        Server::start_with(&["--nats", &cluster.urls(), "--nats-stream", stream], &[]).await
    }

    /// `POST /insert` of `data` as `event` under `Idempotency-Key: key`; panics if no answer
    /// comes within [`INSERT_BOUND`]. Returns the reply and how long it took.
    pub async fn insert_once(&self, event: &str, data: &Value, key: &str) -> (Reply, Duration) {
        let body = serde_json::json!({ "event": event, "data": data }).to_string();
        let headers = [("content-type", "application/json"), ("idempotency-key", key)];
        let (started, sent) = (Instant::now(), super::now_ms());
        let request = self.request("POST", "/insert", &headers, Some(body.into_bytes()));
        let Ok(reply) = tokio::time::timeout(INSERT_BOUND, request).await else {
            // Whether the node has published versions since says whether it is stuck.
            let health = tokio::time::timeout(Duration::from_secs(2), self.get("/healthz")).await;
            let health = health.map_or_else(|_| "no answer".to_owned(), |reply| reply.body);
            panic!(
                "the insert under key {key} sent to {} at {} UTC hung past {INSERT_BOUND:?}; \
                 /healthz now: {health}; log:\n{}",
                self.addr(),
                time_of_day(sent),
                self.log()
            )
        };
        (reply, started.elapsed())
    }
}

/// `HH:MM:SS.mmm` of `ms` since the Unix epoch, in UTC, as the server's log writes times.
fn time_of_day(ms: u64) -> String {
    let (seconds, ms) = (ms / 1000, ms % 1000);
    let (h, m, s) = (seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}
