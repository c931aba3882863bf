//! The server's memory against a subscriber that stops reading while large versions are
//! inserted: the live ring keeps at most its byte budget for it, and what it kept is given back
//! once the subscriber is gone.
//!
//! Memory is read from `/proc/<pid>/status`: `VmRSS` now, `VmHWM` the peak since start.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::support::Server;

const MIB: u64 = 1024 * 1024;

/// The live ring's byte budget: the engine's default, `broker_core::Config::live_bytes`.
const LIVE_BYTES: u64 = 64 * MIB;

/// What the server may hold besides the ring and its baseline: the stalled stream's frame, the
/// request and response of the insert in flight, and the allocator's slack.
const SLACK: u64 = 64 * MIB;

/// The size of each version's data: 1 MB of JSON string.
const VERSION_BYTES: usize = 1_000_000;

/// Versions inserted while the subscriber is stalled: 400 MB in all, six times the budget and
/// three times the room the bound leaves above the baseline, so that a ring that kept them all
/// would fail the test. More would prove no more, and would take disk space a CI machine may
/// not have: every version is stored.
const VERSIONS: usize = 400;

/// Versions inserted with nobody subscribed before the baseline is read, so that the baseline
/// holds what serving inserts of this size takes by itself (buffers, the database's cache).
const WARM_UP: usize = 100;

/// A field of `/proc/<pid>/status` given in kB, such as `VmRSS`, in bytes.
pub fn status(server: &Server, field: &str) -> u64 {
    let path = format!("/proc/{}/status", server.pid());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {path}"));
    let kib = value.trim().strip_suffix(" kB").unwrap_or_else(|| panic!("{field}: {value:?}"));
    kib.trim().parse::<u64>().expect("a number of kB") * 1024
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Inserts version `n` of `event`: 1 MB of data.
async fn insert_large(server: &Server, event: &str, n: usize) {
    let data = format!("\"{n}:{}\"", "x".repeat(VERSION_BYTES));
    server.insert_raw(event, &data).await;
}

/// Opens `GET /events` with a receive buffer of 4 KiB and never reads from it, so that the
/// server's writes to it stall as soon as the first large frame fills the socket buffers.
async fn stalled_subscriber(server: &Server) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("set SO_RCVBUF");
    let mut stream = socket.connect(server.addr()).await.expect("connect");
    let request = format!("GET /events HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr());
    stream.write_all(request.as_bytes()).await.expect("send the request");
    stream
}

#[tokio::test]
async fn a_stalled_subscriber_holds_at_most_the_live_byte_budget_and_gives_it_back() {
    // The write timeout outlasts the inserts, so that the subscriber stays stalled through
    // every one of them; it goes away when the test closes its socket.
    let args = ["--max-body", "2000000", "--write-timeout", "600s"];
    // glibc raises its mmap threshold by itself once 1 MB blocks are freed, and then keeps them
    // in per-thread heaps: how much it keeps depends on which threads ran what, not on what the
    // server holds. A fixed threshold (what the README advises for large versions) makes
    // resident memory follow what is held, which is what this test bounds.
    let env = [("MALLOC_MMAP_THRESHOLD_", "131072")];
    let server = Server::start_with(&args, &env).await;
    for n in 0..WARM_UP {
        insert_large(&server, "warm-up", n).await;
    }
    let baseline = status(&server, "VmRSS");
    let bound = baseline + LIVE_BYTES + SLACK;

    let stalled = stalled_subscriber(&server).await;
    server.wait_for_subscribers(1, Duration::from_secs(5)).await;
    for n in 0..VERSIONS {
        insert_large(&server, "large", n).await;
    }
    let subscribers = server.health().await.subscribers;
    assert_eq!(subscribers, 1, "the stalled subscriber was cut before the last insert");
    let peak = status(&server, "VmHWM");
    assert!(
        peak <= bound,
        "the server peaked at {} with one stalled subscriber, from a baseline of {}: over the \
         {} bound (baseline + ring budget + {} slack)",
        mib(peak),
        mib(baseline),
        mib(bound),
        mib(SLACK)
    );

    drop(stalled);
    server.wait_for_subscribers(0, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut current = status(&server, "VmRSS");
    while current > bound && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        current = status(&server, "VmRSS");
    }
    assert!(
        current <= bound,
        "{} still resident 5 s after the stalled subscriber went away (baseline {}, peak {}): \
         over the {} bound",
        mib(current),
        mib(baseline),
        mib(peak),
        mib(bound)
    );
}
