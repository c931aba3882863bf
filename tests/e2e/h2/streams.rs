//! Event streams over HTTP/2: heartbeats, the slow-subscriber policy with flow-control windows
//! the client never opens, `--max-subscribers` per stream, and graceful shutdown.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::time::Instant;

use super::wait_for_metric;
use crate::support::frames::{self, RawH2};
use crate::support::{Frame, H2, H2_TIMEOUT, H2Events, Server};

#[tokio::test]
async fn an_idle_event_stream_over_h2_gets_heartbeats_and_versions_as_they_come() {
    let server = Server::start_with(&["--heartbeat", "200ms"], &[]).await;
    let mut client = H2::connect(&server).await;
    let mut first = H2Events::open(&mut client, "/events", &[]).await;
    let mut second = H2Events::open(&mut client, "/events?event=a", &[]).await;
    for stream in [&mut first, &mut second] {
        assert_eq!(stream.next_frame(H2_TIMEOUT).await, Ok(Some(Frame::Retry(3000))));
        assert_eq!(
            stream.next_frame(H2_TIMEOUT).await,
            Ok(Some(Frame::Comment("snapshot".into())))
        );
        let started = Instant::now();
        assert_eq!(stream.next_frame(H2_TIMEOUT).await, Ok(Some(Frame::Comment(String::new()))));
        assert!(started.elapsed() < Duration::from_secs(2), "a heartbeat every 200 ms");
    }
    server.insert("a", json!(1)).await;
    for stream in [&mut first, &mut second] {
        let event = stream.next_event().await;
        assert_eq!((event.event.as_str(), event.data.as_str()), ("a", "1"));
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_over_h2_is_reset_and_the_others_go_on() {
    let server = Server::start_with(&["--write-timeout", "1s"], &[]).await;
    // A connection window far larger than the streams': one stream left unread stalls alone.
    let mut builder = h2::client::Builder::new();
    builder.initial_connection_window_size(16 << 20);
    let mut client = H2::connect_with(&server, &builder).await;
    let mut stalled = client.send("GET", "/events", &[], None).await.expect("a stream");
    let mut reader = H2Events::open(&mut client, "/events", &[]).await;
    server.wait_for_subscribers(2, Duration::from_secs(5)).await;

    // Each version is more than the stalled stream's window holds: the broker never waits for
    // it, and the reader gets each as it comes.
    for n in 0..3 {
        server.insert_raw("big", &format!("\"{n}{}\"", "x".repeat(40_000))).await;
        assert!(reader.next_event().await.data.starts_with(&format!("\"{n}")));
    }

    // At the write timeout the stalled stream is reset, its subscription released, and the
    // connection goes on.
    let body = stalled.body_mut();
    let reset = tokio::time::timeout(H2_TIMEOUT, async {
        loop {
            match body.data().await {
                Some(Ok(_)) => {}
                Some(Err(error)) => return error,
                None => panic!("the stalled stream ended instead of being reset"),
            }
        }
    });
    let reset = reset.await.expect("the stalled stream is reset within the write timeout");
    assert_eq!(reset.reason(), Some(h2::Reason::CANCEL), "{reset}");
    server.wait_for_subscribers(1, Duration::from_secs(5)).await;
    wait_for_metric(&server, "broker_http2_stream_write_timeouts_total", 1.0).await;
    server.insert("big", json!("after")).await;
    assert_eq!(reader.next_event().await.data, "\"after\"");
    assert_eq!(client.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn a_connection_that_reads_nothing_over_h2_is_closed_at_the_write_timeout() {
    let server = Server::start_with(&["--write-timeout", "1s"], &[]).await;
    server.insert_raw("big", &format!("\"{}\"", "x".repeat(100_000))).await;
    // Windows of nothing: not even the prelude can be sent.
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(0);
    let mut client = H2::connect_with(&server, &builder).await;
    let stream = client.send("GET", "/events", &[], None).await.expect("a stream");
    assert_eq!(stream.status(), 200);
    server.wait_for_subscribers(1, Duration::from_secs(5)).await;
    assert!(client.ended_within(H2_TIMEOUT).await.is_some(), "the server closes the connection");
    server.wait_for_subscribers(0, Duration::from_secs(5)).await;
    wait_for_metric(&server, r#"broker_connections_closed_total{cause="write_timeout"}"#, 1.0)
        .await;
}

#[tokio::test]
async fn max_subscribers_over_h2_refuses_the_stream_not_the_connection() {
    let server = Server::start_with(&["--max-subscribers", "1"], &[]).await;
    let mut client = H2::connect(&server).await;
    let mut first = H2Events::open(&mut client, "/events", &[]).await;
    assert_eq!(first.status, 200);
    let refused = client.get("/events").await;
    assert_eq!((refused.status, refused.json()["error"].clone()), (503, json!("unavailable")));
    assert!(refused.header("retry-after").is_some(), "{refused:?}");
    assert_eq!(refused.header("access-control-allow-origin"), Some("*"));
    // The connection and its first stream go on.
    assert_eq!(client.get("/healthz").await.status, 200);
    server.insert("a", json!(1)).await;
    assert_eq!(first.next_event().await.event, "a");
}

#[tokio::test]
async fn shutdown_over_h2_ends_event_streams_finishes_requests_in_flight_and_sends_goaway() {
    let mut server = Server::start_with(&["--shutdown-timeout", "10s"], &[]).await;
    let mut client = H2::connect(&server).await;
    let mut events = H2Events::open(&mut client, "/events", &[]).await;
    assert_eq!(events.next_frame(H2_TIMEOUT).await, Ok(Some(Frame::Retry(3000))));
    server.wait_for_subscribers(1, Duration::from_secs(5)).await;
    // Another connection, read frame by frame, to see the GOAWAY itself.
    let mut raw = RawH2::connect(server.addr()).await;
    raw.send(&frames::get(1, "/healthz")).await;
    let (_, answer) = raw.until(H2_TIMEOUT, |frame| frame.kind == frames::HEADERS).await;
    assert!(answer.is_some(), "/healthz is answered");

    // An insert in flight: its head is in, its body comes after the signal.
    let body = br#"{"event":"late","data":1}"#;
    let request = http::Request::post(format!("http://{}/insert", server.addr()))
        .header("content-type", "application/json")
        .body(())
        .expect("a request");
    let (response, mut upload) = client.sender().send_request(request, false).expect("a stream");
    upload.send_data(Bytes::from_static(&body[..10]), false).expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.signal("TERM");
    let rest = events.until_end(Duration::from_secs(5)).await;
    assert!(rest.iter().all(|frame| !matches!(frame, Frame::Event(_))), "{rest:?}");
    assert!(matches!(events.ended, Some(Ok(()))), "the stream ends cleanly: {:?}", events.ended);
    let (_, go_away) = raw.until(H2_TIMEOUT, |frame| frame.kind == frames::GOAWAY).await;
    let go_away = go_away.expect("a GOAWAY before the close");
    assert_eq!(go_away.error_code(), 0, "NO_ERROR: {go_away:?}");
    drop(raw);

    upload.send_data(Bytes::from_static(&body[10..]), true).expect("send the rest");
    let response = tokio::time::timeout(H2_TIMEOUT, response).await.expect("in time");
    assert_eq!(response.expect("an answer").status(), 201, "the insert in flight is answered");
    let ended = client.ended_within(H2_TIMEOUT).await.expect("the connection ends");
    assert!(ended.is_ok(), "the connection ends with GOAWAY, not an error: {ended:?}");
    let exit = server.wait_for_exit("TERM").await;
    assert_eq!(exit.status.code(), Some(0), "{}", server.log());
}
