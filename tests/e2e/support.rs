//! The test harness: the real server binary ([`Server`]), an ordinary HTTP client for JSON
//! requests (`http`), an SSE client that checks every frame ([`Sse`]), and raw HTTP/1.1 over TCP
//! for exact bytes (`raw`).
//!
//! Every wait is bounded: a test that waits for something that never comes fails with a message
//! instead of hanging.

mod frame;
mod http;
mod raw;
mod server;
mod sse;

use std::time::Duration;

pub use frame::{Event, Frame};
pub use http::{Version, audit_path, encode};
pub use raw::exchange;
pub use server::Server;
pub use sse::{Sse, Start};

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
