//! The test harness: the real server binary ([`Server`]), an ordinary HTTP client for JSON
//! requests (`http`), an SSE client that checks every frame ([`Sse`]), raw HTTP/1.1 over TCP
//! for exact bytes (`raw`), an HTTP/2 client ([`H2`]) and HTTP/2 frames by hand (`frames`),
//! the binary run as a command ([`run`]), a three-node NATS JetStream cluster for the clustered
//! storage ([`NatsCluster`]), a small file system to fill up ([`Tmpfs`]), and certificates for
//! HTTPS with a client that trusts them ([`Pki`]).
//!
//! Every wait is bounded: a test that waits for something that never comes fails with a message
//! instead of hanging.

mod command;
mod feed;
mod frame;
pub mod frames;
mod http;
mod http2;
mod nats;
mod nginx;
mod node;
mod raw;
mod server;
mod sse;
mod tls;
mod tmpfs;

use std::time::Duration;

pub use command::run;
pub use feed::Feed;
pub use frame::{Event, Frame};
pub use http::{Reply, Version, audit_path, encode};
pub use http2::{H2, H2_TIMEOUT, H2Events};
pub use nats::{NODES, NatsCluster};
pub use nginx::Nginx;
pub use node::INSERT_BOUND;
pub use raw::exchange;
pub use server::{Server, binary};
pub use sse::{Sse, Start};
pub use tls::{Https, Pki, replace_file};
pub use tmpfs::{Tmpfs, fill};

/// The `(event, id)` of each version or event, for comparing sequences.
pub fn ids<T: Keyed>(items: &[T]) -> Vec<(String, u64)> {
    items.iter().map(|item| (item.event().to_string(), item.id())).collect()
}

/// Something with an event name and an id: a [`Version`] or an [`Event`].
pub trait Keyed {
    /// The event name.
    fn event(&self) -> &str;
    /// The id.
    fn id(&self) -> u64;
}

impl Keyed for Version {
    fn event(&self) -> &str {
        &self.event
    }
    fn id(&self) -> u64 {
        self.id
    }
}

impl Keyed for Event {
    fn event(&self) -> &str {
        &self.event
    }
    fn id(&self) -> u64 {
        self.id
    }
}

impl Server {
    /// Polls `/healthz` until it reports `subscribers` live subscribers, for at most `timeout`;
    /// returns how long that took.
    pub async fn wait_for_subscribers(&self, subscribers: u64, timeout: Duration) -> Duration {
        let start = tokio::time::Instant::now();
        loop {
            let health = self.health().await;
            if health.subscribers == subscribers {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "/healthz still reports {} subscribers, not {subscribers}, after {timeout:?}",
                health.subscribers
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.expect("the clock is after 1970").as_millis().try_into().expect("fits in u64")
}

/// The `/metrics` page: Prometheus text.
pub struct Metrics(String);

impl Metrics {
    /// The value of `series`, written as the page writes it (`name` or `name{label="value"}`);
    /// 0 when the page does not have it, as for a labelled counter never incremented.
    pub fn value(&self, series: &str) -> f64 {
        let line = self.0.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '));
        line.map_or(0.0, |value| {
            value.trim().parse().unwrap_or_else(|_| panic!("{series} {value:?} is not a number"))
        })
    }

    /// Every line of the page that starts with `prefix`, for failure messages.
    pub fn lines(&self, prefix: &str) -> Vec<&str> {
        self.0.lines().filter(|line| line.starts_with(prefix)).collect()
    }
}

impl Server {
    /// `GET /metrics`.
    pub async fn metrics(&self) -> Metrics {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "GET /metrics: {reply}");
        Metrics(reply.body)
    }

    /// How many file descriptors the server process has open now (`/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        let dir = format!("/proc/{}/fd", self.pid());
        std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("{dir}: {error}")).count()
    }

    /// The CPU time, user and system, the server process has used so far (`/proc/<pid>/stat`).
    pub fn cpu_time(&self) -> Duration {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
        // The command name, in parentheses, may hold spaces; the fields after it do not. utime and
        // stime are fields 14 and 15, the 12th and 13th after the name.
        let (_, fields) = stat.rsplit_once(')').expect("a stat line names the command");
        let ticks: u64 = fields
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|field| field.parse::<u64>().expect("a number of clock ticks"))
            .sum();
        let output = std::process::Command::new("getconf").arg("CLK_TCK").output();
        let output = output.expect("run getconf CLK_TCK");
        let per_second: u64 =
            String::from_utf8_lossy(&output.stdout).trim().parse().expect("ticks");
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// Lowers the running server's limit of open files, soft and hard, to `limit` (`prlimit`).
    pub fn limit_open_files(&self, limit: u64) {
        let status = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", self.pid()))
            .arg(format!("--nofile={limit}:{limit}"))
            .status()
            .expect("run prlimit (util-linux)");
        assert!(status.success(), "prlimit --nofile={limit}:{limit} failed");
    }
}

/// Reads what a raw connection answers: the whole response, or `None` if the connection was
/// closed or reset before a whole response head arrived. A body cut short is returned as far as
/// it came. Panics if neither happens within `timeout`.
pub async fn read_reply(
    stream: &mut tokio::net::TcpStream,
    timeout: Duration,
) -> Option<raw::RawReply> {
    let read = async {
        let mut buffer = Vec::new();
        let head = raw::read_head(stream, &mut buffer).await?;
        let mut body = Vec::new();
        let mut framing = head.framing();
        while !framing.decode(&mut buffer, &mut body) {
            if !matches!(raw::read_more(stream, &mut buffer).await, Ok(true)) {
                break;
            }
        }
        Some(raw::RawReply { head, body })
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| panic!("neither a response nor a close within {timeout:?}"))
}
