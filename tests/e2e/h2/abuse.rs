//! HTTP/2 clients that ask for more than a client needs: too many streams at once, header lists
//! over the limit, streams opened and reset in a loop (rapid reset), and floods of SETTINGS and
//! PING. Each is refused or disconnected, and the server goes on serving everyone else.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::wait_for_metric;
use crate::support::frames::{
    self, ACK, CANCEL, DATA, ENHANCE_YOUR_CALM, GOAWAY, HEADERS, PING, REFUSED_STREAM, RST_STREAM,
    RawH2, SETTINGS,
};
use crate::support::{H2, H2_TIMEOUT, Server};

/// The control frames a client may send at once before it is disconnected (`h2_flood.rs`).
const CONTROL_BURST: usize = 1_000;

/// Checks that `server` still serves a new client over HTTP/2 and HTTP/1.1.
async fn others_are_served(server: &Server) {
    assert_eq!(H2::connect(server).await.get("/healthz").await.status, 200);
    assert_eq!(server.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn h2_streams_beyond_the_limit_are_refused_while_the_others_go_on() {
    let server = Server::start_with(&["--h2-max-streams", "4"], &[]).await;
    let mut raw = RawH2::connect(server.addr()).await;
    let opening: Vec<u8> =
        [1, 3, 5, 7, 9].iter().flat_map(|&id| frames::get(id, "/events")).collect();
    raw.send(&opening).await;
    let mut answered = BTreeSet::new();
    let mut refused = None;
    while answered.len() < 4 || refused.is_none() {
        let frame = raw.next(H2_TIMEOUT).await.expect("the connection stays open");
        match frame.kind {
            HEADERS => {
                answered.insert(frame.stream);
            }
            RST_STREAM => refused = Some((frame.stream, frame.error_code())),
            _ => {}
        }
    }
    assert_eq!(answered, BTreeSet::from([1, 3, 5, 7]));
    assert_eq!(refused, Some((9, REFUSED_STREAM)));

    // The four streams within the limit carry the next version.
    server.insert("a", json!(1)).await;
    let mut delivered = BTreeSet::new();
    while delivered.len() < 4 {
        let frame = raw.next(H2_TIMEOUT).await.expect("the connection stays open");
        if frame.kind == DATA && frame.payload.windows(8).any(|w| w == b"event: a") {
            delivered.insert(frame.stream);
        }
    }
    assert_eq!(delivered, answered);
}

#[tokio::test]
async fn a_connection_without_streams_gets_goaway_at_the_header_timeout_and_is_closed() {
    let server = Server::start_with(&["--header-timeout", "1s"], &[]).await;
    let mut raw = RawH2::connect(server.addr()).await;
    raw.send(&frames::get(1, "/healthz")).await;
    let (_, answer) = raw.until(H2_TIMEOUT, |frame| frame.kind == HEADERS).await;
    assert!(answer.is_some(), "/healthz is answered");
    let idle = Instant::now();
    let (_, go_away) = raw.until(H2_TIMEOUT, |frame| frame.kind == GOAWAY).await;
    assert_eq!(go_away.expect("a GOAWAY").error_code(), 0, "NO_ERROR");
    assert!(idle.elapsed() >= Duration::from_millis(900), "GOAWAY after {:?}", idle.elapsed());
    // This client acknowledges nothing and closes nothing: the server closes.
    let (_, frame) = raw.until(H2_TIMEOUT, |_| false).await;
    assert!(frame.is_none(), "the connection closes");
    let cause = r#"broker_connections_closed_total{cause="header_timeout"}"#;
    wait_for_metric(&server, cause, 1.0).await;
}

#[tokio::test]
async fn a_header_list_over_the_limit_is_refused_and_the_connection_goes_on() {
    let server = Server::start().await;
    let mut client = H2::connect(&server).await;
    let fits = "x".repeat(60 * 1024);
    let reply = client.exchange("GET", "/healthz", &[("x-fits", &fits)], None).await;
    assert_eq!(reply.expect("an answer").status, 200, "60 KiB of headers fit");
    let over = "x".repeat(70 * 1024);
    match client.exchange("GET", "/healthz", &[("x-over", &over)], None).await {
        Ok(reply) => assert_eq!(reply.status, 431, "{reply:?}"),
        Err(error) => assert!(error.is_reset(), "the stream is refused: {error}"),
    }
    assert_eq!(client.get("/healthz").await.status, 200, "the connection goes on");
}

#[tokio::test]
async fn rapid_reset_gets_goaway_enhance_your_calm_while_others_are_served() {
    let server = Server::start().await;
    let mut raw = RawH2::connect(server.addr()).await;
    // Far fewer resets than the control frame budget: h2's own limit on streams reset before
    // they were accepted answers them.
    let flood: Vec<u8> = (0..200u32)
        .flat_map(|n| [frames::get(2 * n + 1, "/healthz"), frames::rst_stream(2 * n + 1, CANCEL)])
        .flatten()
        .collect();
    raw.send(&flood).await;
    let (_, go_away) = raw.until(H2_TIMEOUT, |frame| frame.kind == GOAWAY).await;
    let go_away = go_away.expect("a GOAWAY");
    assert_eq!(go_away.error_code(), ENHANCE_YOUR_CALM, "{go_away:?}");
    assert!(raw.next(H2_TIMEOUT).await.is_none(), "then the connection closes");
    others_are_served(&server).await;
    wait_for_metric(&server, r#"broker_connections_closed_total{cause="h2_abuse"}"#, 1.0).await;
}

#[tokio::test]
async fn streams_reset_as_soon_as_the_server_answers_them_run_out_the_control_budget() {
    let server = Server::start().await;
    let mut raw = RawH2::connect(server.addr()).await;
    // A connection window that never runs out: only the resets count.
    raw.send(&frames::frame(frames::WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes())).await;
    for n in 0..5000u32 {
        let id = 2 * n + 1;
        raw.send(&frames::get(id, "/events")).await;
        let answered = |frame: &frames::RawFrame| {
            (frame.kind == HEADERS && frame.stream == id) || frame.kind == GOAWAY
        };
        let (_, frame) = raw.until(H2_TIMEOUT, answered).await;
        let frame = frame.expect("the connection stays open until the GOAWAY");
        if frame.kind == GOAWAY {
            assert_eq!(frame.error_code(), ENHANCE_YOUR_CALM, "{frame:?}");
            assert!(n as usize >= CONTROL_BURST, "only {n} resets before the GOAWAY");
            assert!(raw.next(H2_TIMEOUT).await.is_none(), "then the connection closes");
            others_are_served(&server).await;
            server.wait_for_subscribers(0, H2_TIMEOUT).await;
            let cause = r#"broker_connections_closed_total{cause="h2_abuse"}"#;
            wait_for_metric(&server, cause, 1.0).await;
            return;
        }
        raw.send(&frames::rst_stream(id, CANCEL)).await;
    }
    panic!("5000 streams opened and reset without a GOAWAY");
}

#[tokio::test]
async fn settings_and_ping_floods_unread_get_goaway_and_a_close() {
    let server = Server::start().await;
    for (kind, payload) in [(SETTINGS, &[][..]), (PING, &[7; 8][..])] {
        let mut raw = RawH2::connect(server.addr()).await;
        // Twenty times the budget, sent without reading a single acknowledgement.
        let flood = frames::frame(kind, 0, 0, payload).repeat(20 * CONTROL_BURST);
        raw.send(&flood).await;
        let (before, go_away) = raw.until(H2_TIMEOUT, |frame| frame.kind == GOAWAY).await;
        let go_away = go_away.unwrap_or_else(|| panic!("a GOAWAY for a flood of {kind}"));
        assert_eq!(go_away.error_code(), ENHANCE_YOUR_CALM, "{go_away:?}");
        let acks = before.iter().filter(|frame| frame.kind == kind && frame.flags & ACK != 0);
        let acks = acks.count();
        assert!(acks <= CONTROL_BURST, "{acks} acknowledgements of type {kind} were sent");
        assert!(raw.next(H2_TIMEOUT).await.is_none(), "then the connection closes");
    }
    others_are_served(&server).await;
    wait_for_metric(&server, r#"broker_connections_closed_total{cause="h2_abuse"}"#, 2.0).await;
}

/// An HTTP/2 client over `--max-connections` is told in its own protocol: the server's SETTINGS,
/// then GOAWAY `REFUSED_STREAM` with no stream processed, so that it may retry.
#[tokio::test]
async fn an_h2_connection_over_the_limit_gets_goaway_refused_stream() {
    let server = Server::start_with(&["--max-connections", "1"], &[]).await;
    let held = crate::support::Sse::snapshot(&server).await;
    let mut raw = RawH2::connect(server.addr()).await;
    let (before, go_away) = raw.until(H2_TIMEOUT, |frame| frame.kind == GOAWAY).await;
    let go_away = go_away.expect("a GOAWAY for a connection over the limit");
    assert_eq!(go_away.error_code(), REFUSED_STREAM, "{go_away:?}");
    assert!(before.iter().any(|frame| frame.kind == SETTINGS), "the server's preface first");
    assert!(raw.next(H2_TIMEOUT).await.is_none(), "then the connection closes");
    drop(held);
}
