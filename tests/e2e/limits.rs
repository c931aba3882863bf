//! The server's limits against clients that misbehave: too many connections, headers sent too
//! slowly, a subscriber that stops reading, clients that vanish, running out of file descriptors,
//! and hostile bytes. Each test checks that the server defends itself and goes on serving
//! everyone else.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::support::{Server, Sse, read_reply};

/// How long a raw exchange in these tests may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A plain request that closes its connection once answered.
fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").into_bytes()
}

/// `POST /insert` of `data` (JSON text) as `event`, closing the connection once answered.
fn post_insert(event: &str, data: &str) -> Vec<u8> {
    let body = format!(r#"{{"event":"{event}","data":{data}}}"#);
    format!(
        "POST /insert HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` on a new connection until it is answered with something other than 503, for
/// at most 5 s; returns the status and body.
async fn when_served(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let start = Instant::now();
    loop {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.write_all(request).await;
        // A refused connection may be reset rather than answered: the server does not read it.
        if let Some(reply) = read_reply(&mut stream, REPLY_TIMEOUT).await
            && reply.head.status != 503
        {
            return (reply.head.status, reply.text());
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still refused after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_connection_over_max_connections_gets_503_with_retry_after_until_one_closes() {
    let server =
        Server::start_with(&["--max-connections", "5", "--max-subscribers", "5"], &[]).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(Sse::snapshot(&server).await);
    }
    for _ in 0..2 {
        // The server answers a connection over the limit at once, without reading its request;
        // the client reads first, since a request the server never reads would turn its close
        // into a reset.
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        let reply = read_reply(&mut stream, REPLY_TIMEOUT).await;
        let reply = reply.expect("the connection over the limit is answered, not just closed");
        assert_eq!(reply.head.status, 503, "{reply:?}");
        let retry_after = reply.head.header("retry-after").expect("a Retry-After header");
        let seconds: u64 = retry_after.parse().expect("Retry-After in seconds");
        assert!(seconds >= 1, "Retry-After: {retry_after}");
        let content_type = reply.head.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "{reply:?}");
        let error: serde_json::Value = serde_json::from_str(&reply.text()).expect("a JSON body");
        assert_eq!(error["error"], "unavailable", "{error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    }

    drop(held.pop());
    let (status, body) = when_served(server.addr(), &get("/healthz")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = when_served(server.addr(), &post_insert("a", "1")).await;
    assert_eq!(status, 201, "{body}");
    for sse in &mut held {
        let event = sse.next_event().await;
        assert_eq!((event.event.as_str(), event.data.as_str()), ("a", "1"), "a held stream");
    }
    drop(held);
    when_served(server.addr(), &get("/healthz")).await;
    let refused = server.metrics().await.value("broker_connections_refused_total");
    assert!(refused >= 2.0, "broker_connections_refused_total {refused}");
}

#[tokio::test]
async fn early_answers_reach_a_client_that_writes_its_whole_request_before_reading() {
    let server = Server::start_with(&["--max-body", "1024"], &[]).await;
    // Bodies the server does not read, larger than the socket buffers take in, so that the
    // client is still writing when the server answers, and under the 8 MiB the server discards
    // while closing.
    let body = format!(r#"{{"event":"a","data":"{}"}}"#, "x".repeat(4 * 1024 * 1024));
    let request = |content_type: &str| {
        format!(
            "POST /insert HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let huge_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(80 * 1024)
    )
    .into_bytes();
    let cases = [
        ("a body over --max-body", request("application/json"), 413),
        ("a body that is not JSON", request("text/plain"), 415),
        ("a head over 64 KiB", huge_head, 431),
    ];
    for (what, request, status) in cases {
        for attempt in 0..10 {
            let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
            // Like Python's http.client: the whole request first, the answer after.
            stream.write_all(&request).await.expect("the server takes the whole request in");
            let reply = read_reply(&mut stream, REPLY_TIMEOUT).await;
            let reply = reply.unwrap_or_else(|| panic!("{what}, attempt {attempt}: a reset"));
            assert_eq!(reply.head.status, status, "{what}, attempt {attempt}: {reply:?}");
        }
    }
    assert_eq!(server.health().await.last_id, 0, "nothing was stored");
}

#[tokio::test]
async fn subscribers_at_their_limit_leave_room_for_inserts_and_health_checks() {
    let server = Server::start_with(&["--max-subscribers", "3"], &[]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Sse::snapshot(&server).await);
    }
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream.write_all(&get("/events")).await.expect("write");
        let reply = read_reply(&mut stream, REPLY_TIMEOUT).await.expect("an answer");
        assert_eq!(reply.head.status, 503, "{reply:?}");
        assert!(reply.head.header("retry-after").is_some(), "{reply:?}");
        let error: serde_json::Value = serde_json::from_str(&reply.text()).expect("JSON");
        assert_eq!(error["error"], "unavailable", "{error}");
    }
    let (status, body) = when_served(server.addr(), &post_insert("a", "1")).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = when_served(server.addr(), &get("/healthz")).await;
    assert_eq!(status, 200, "{body}");
    for sse in &mut held {
        let event = sse.next_event().await;
        assert_eq!((event.event.as_str(), event.data.as_str()), ("a", "1"), "a held stream");
    }
    drop(held.pop());
    // The freed place is anyone's again.
    let start = Instant::now();
    loop {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream.write_all(&get("/events")).await.expect("write");
        let mut head = [0; 12];
        stream.read_exact(&mut head).await.expect("a status line");
        if &head == b"HTTP/1.1 200" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the freed place stays taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stalled_request_bodies_are_cut_at_the_body_timeout_and_health_checks_get_through() {
    let server = Server::start_with(
        &["--max-connections", "50", "--max-subscribers", "50", "--body-timeout", "2s"],
        &[],
    )
    .await;
    // 55 inserts that send their head and then nothing of their 100-byte body: 50 take every
    // connection the server has, and the 5 past the limit are refused.
    let stalled = b"POST /insert HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let started = Instant::now();
    let mut attackers = Vec::new();
    for _ in 0..55 {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream.write_all(stalled).await.expect("write");
        attackers.push(stream);
    }
    let (status, body) = when_served(server.addr(), &get("/healthz")).await;
    assert_eq!(status, 200, "{body}");
    let served_after = started.elapsed();
    eprintln!("/healthz answered {served_after:?} after 55 stalled bodies (--body-timeout 2s)");
    assert!(served_after >= Duration::from_millis(1500), "served after {served_after:?}: too soon");
    let mut timed_out = 0;
    for mut stream in attackers {
        let reply = read_reply(&mut stream, REPLY_TIMEOUT).await.expect("an answer, then a close");
        match reply.head.status {
            408 => timed_out += 1,
            503 => {}
            status => panic!("a stalled body answered {status}: {reply:?}"),
        }
    }
    assert_eq!(timed_out, 50, "every stalled body that was served timed out");
    assert!(started.elapsed() < Duration::from_secs(8), "cut after {:?}", started.elapsed());
    assert_eq!(server.health().await.last_id, 0, "nothing was stored");
}

#[tokio::test]
async fn connection_limits_beyond_the_open_file_limit_are_warned_about_at_start_up() {
    let server = Server::start_with(&["--max-connections", "1000000000"], &[]).await;
    server.health().await;
    let log = server.log();
    assert!(log.contains("connection limits"), "the limits are logged:\n{log}");
    assert!(log.contains("exceeds the"), "a warning names the problem:\n{log}");
}

#[tokio::test]
async fn a_refused_client_that_writes_its_whole_request_first_reads_the_503_with_cors_headers() {
    let origin = "http://app.example";
    let server =
        Server::start_with(&["--max-connections", "2", "--allow-origin", origin], &[]).await;
    let held = [Sse::snapshot(&server).await, Sse::snapshot(&server).await];
    // A body the server never reads, larger than the socket buffers: closing on it unread would
    // reset the connection and destroy the answer before this client reads it.
    let data = format!("\"{}\"", "x".repeat(4 * 1024 * 1024));
    let body = format!(r#"{{"event":"a","data":{data}}}"#);
    let request = format!(
        "POST /insert HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for attempt in 0..10 {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("the whole request is taken in");
        let reply = read_reply(&mut stream, REPLY_TIMEOUT).await;
        let reply = reply.unwrap_or_else(|| panic!("attempt {attempt}: no answer, only a close"));
        assert_eq!(reply.head.status, 503, "attempt {attempt}: {reply:?}");
        assert!(reply.head.header("retry-after").is_some(), "{reply:?}");
        assert_eq!(reply.head.header("access-control-allow-origin"), Some(origin), "{reply:?}");
    }
    drop(held);
}

/// Waits, for at most 2 s, until the metric `series` is at least `value`: the server counts a
/// closed connection just after the client sees it close.
async fn wait_for_metric(server: &Server, series: &str, value: f64) {
    let start = Instant::now();
    loop {
        let metrics = server.metrics().await;
        let now = metrics.value(series);
        if now >= value {
            return;
        }
        let family = series.split('{').next().unwrap_or(series);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{series} is {now}, not at least {value}:\n{}",
            metrics.lines(family).join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A slowloris client: sends a request head without its end, one more header byte every 300 ms,
/// until the server closes the connection. Returns when that happened and what it received.
async fn slowloris(addr: SocketAddr) -> (Duration, Instant, Vec<u8>) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.expect("send");
    let mut received = Vec::new();
    let mut buffer = [0; 1024];
    loop {
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(10), "a slowloris client is still connected");
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return (elapsed, Instant::now(), received),
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(300)) => {
                if stream.write_all(b"a").await.is_err() {
                    return (elapsed, Instant::now(), received);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_client_sending_its_headers_byte_by_byte_is_cut_off_while_others_are_served() {
    const SLOW_CLIENTS: usize = 5;
    let server = Server::start_with(&["--header-timeout", "1s"], &[]).await;
    let slow: Vec<_> = (0..SLOW_CLIENTS).map(|_| tokio::spawn(slowloris(server.addr()))).collect();

    // Meanwhile, everyone else is served as usual.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let version = server.insert("a", json!("served")).await;
    let mut sse = Sse::snapshot(&server).await;
    assert_eq!(sse.next_event().await.key(), version.key());
    assert_eq!(server.audit("a").await, [version]);
    assert_eq!(server.health().await.subscribers, 1);
    let served = Instant::now();

    for client in slow {
        let (elapsed, cut, received) = client.await.expect("a slowloris client");
        assert!(
            Duration::from_millis(900) <= elapsed && elapsed < Duration::from_secs(5),
            "a client with a 1 s header timeout was cut off after {elapsed:?}"
        );
        assert!(served < cut, "the other requests were served while the slow clients waited");
        let text = String::from_utf8_lossy(&received);
        assert!(
            received.is_empty() || text.starts_with("HTTP/1.1 408"),
            "a client cut off for its slow headers got {text:?}"
        );
    }
    let series = r#"broker_connections_closed_total{cause="header_timeout"}"#;
    wait_for_metric(&server, series, SLOW_CLIENTS as f64).await;
}

#[tokio::test]
async fn a_publisher_connection_stays_open_between_inserts_and_closes_idle_at_the_header_timeout() {
    let server = Server::start_with(&["--header-timeout", "1s"], &[]).await;
    let series = r#"broker_connections_closed_total{cause="header_timeout"}"#;
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    let body = r#"{"event":"a","data":1}"#;
    let insert = format!(
        "POST /insert HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Inserts 600 ms apart, 3 s in all: the timeout counts from each answer, not from the start.
    for id in 1..=5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        stream.write_all(insert.as_bytes()).await.expect("the connection is still open");
        let reply = read_reply(&mut stream, REPLY_TIMEOUT).await.expect("an answer");
        assert_eq!(reply.head.status, 201, "{reply:?}");
        assert_eq!(reply.head.header("connection"), None, "{reply:?}");
        let stored: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(stored["id"], id, "{stored}");
    }
    let before = server.metrics().await.value(series);
    let idle = Instant::now();
    // The test's own client asks for the metrics meanwhile, so that it is never idle that long.
    let mut byte = [0; 1];
    let end = loop {
        tokio::select! {
            read = stream.read(&mut byte) => break read,
            () = tokio::time::sleep(Duration::from_millis(100)) => { server.metrics().await; }
        }
    };
    let waited = idle.elapsed();
    // As hyper does on a header timeout: no answer, the connection just closes.
    assert!(matches!(end, Ok(0)), "closed without an answer: {end:?} {byte:?}");
    assert!(
        Duration::from_millis(900) <= waited && waited < Duration::from_secs(5),
        "an idle publisher with a 1 s header timeout was closed after {waited:?}"
    );
    wait_for_metric(&server, series, before + 1.0).await;
    assert_eq!(server.metrics().await.value(series), before + 1.0, "only that one timed out");
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected_and_the_others_get_everything() {
    // Enough 64 KiB frames to fill the stalled client's receive buffer, the server's send buffer
    // and hyper's write buffer many times over.
    const BIG: usize = 64 * 1024;
    const MAX_INSERTS: usize = 160;
    let server = Server::start_with(&["--write-timeout", "1s"], &[]).await;
    let mut reader = Sse::snapshot(&server).await;
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("set SO_RCVBUF");
    let mut stalled = socket.connect(server.addr()).await.expect("connect");
    stalled.write_all(&get("/events")).await.expect("send the request");
    server.wait_for_subscribers(2, Duration::from_secs(5)).await;
    let reading = tokio::spawn(async move {
        let mut events = Vec::new();
        loop {
            let event = reader.next_event().await;
            if event.event == "done" {
                return events;
            }
            events.push(event);
        }
    });

    let mut inserted = Vec::new();
    let mut disconnected = false;
    for i in 0..MAX_INSERTS {
        let data = json!(format!("{i}:{}", "x".repeat(BIG)));
        inserted.push(server.insert("big", data).await.id);
        if server.health().await.subscribers == 1 {
            disconnected = true;
            break;
        }
        // Past a few MiB the buffers are full: give the deadline time rather than pile on data.
        if i >= 48 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let frames = inserted.len();
    assert!(disconnected, "{frames} frames of 64 KiB later, the stalled subscriber is still there");
    for i in 0..5 {
        inserted.push(server.insert("small", json!(i)).await.id);
    }
    server.insert("done", json!(null)).await;
    let received = tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("the reading subscriber gets everything in time")
        .expect("the reader");
    let received: Vec<u64> = received.iter().map(|event| event.id).collect();
    assert_eq!(received, inserted, "the reading subscriber gets every version");

    // The stalled client finds its connection closed once it reads what was buffered for it.
    let drained = async {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(1..) = stalled.read(&mut buffer).await {}
    };
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("the stalled client's connection ends");
    wait_for_metric(&server, r#"broker_connections_closed_total{cause="write_timeout"}"#, 1.0)
        .await;
}

#[tokio::test]
async fn a_thousand_vanishing_subscribers_leave_no_subscriber_and_no_descriptor_behind() {
    const CLIENTS: usize = 1000;
    let server = Server::start_with(&["--heartbeat", "200ms"], &[]).await;
    let version = server.insert("a", json!(1)).await;
    server.health().await;
    let baseline = server.open_fds();

    let clients: Vec<Sse> = futures_util::stream::iter(0..CLIENTS)
        .map(|_| Sse::open(&server, "/events", &[]))
        .buffer_unordered(64)
        .collect()
        .await;
    server.wait_for_subscribers(CLIENTS as u64, Duration::from_secs(20)).await;
    let open = server.open_fds();
    assert!(open >= baseline + CLIENTS, "{open} descriptors open, {baseline} before");
    drop(clients);

    server.wait_for_subscribers(0, Duration::from_secs(15)).await;
    let start = Instant::now();
    loop {
        let open = server.open_fds();
        if open <= baseline + 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{open} descriptors still open 10 s after the clients left, {baseline} before"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sse = Sse::snapshot(&server).await;
    assert_eq!(sse.next_event().await.key(), version.key(), "a new subscriber is served");
}

/// Opens `GET /events` on a new connection; returns it and whether the server began to answer
/// within `wait`.
async fn try_subscribe(addr: SocketAddr, wait: Duration) -> (TcpStream, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("the kernel completes the handshake");
    stream.write_all(&get("/events")).await.expect("send the request");
    let mut byte = [0; 1];
    let answered = match tokio::time::timeout(wait, stream.read(&mut byte)).await {
        Ok(Ok(1)) => true,
        Err(_) => false,
        Ok(other) => panic!("the server closed a connection it accepted: {other:?}"),
    };
    (stream, answered)
}

#[tokio::test]
async fn out_of_file_descriptors_the_server_waits_and_serves_again_once_some_close() {
    const LIMIT: usize = 64;
    assert!(std::path::Path::new("/usr/bin/prlimit").exists(), "prlimit (util-linux) is needed");
    let mut server = Server::start().await;
    server.health().await;
    server.limit_open_files(LIMIT as u64);

    let mut held = Vec::new();
    let mut waiting = None;
    for _ in 0..2 * LIMIT {
        let (stream, answered) = try_subscribe(server.addr(), Duration::from_secs(1)).await;
        if !answered {
            waiting = Some(stream);
            break;
        }
        held.push(stream);
    }
    let mut waiting = waiting.expect("the server ran out of descriptors");
    assert!(held.len() < LIMIT, "{} connections served under a limit of {LIMIT}", held.len());

    // Out of descriptors, the accept loop backs off instead of spinning, and the server lives.
    let before = server.cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = server.cpu_time().saturating_sub(before);
    assert!(used < Duration::from_millis(500), "the server used {used:?} of CPU in 1 s, idle");
    assert!(server.exit_status().is_none(), "the server exited; log:\n{}", server.log());

    drop(held);
    // The connection that waited in the backlog is served once descriptors are free again.
    let mut byte = [0; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(1))), "the waiting connection is answered: {read:?}");
    drop(waiting);
    let version = server.insert("a", json!("after")).await;
    let mut sse = Sse::snapshot(&server).await;
    assert_eq!(sse.next_event().await.key(), version.key());
    assert!(server.exit_status().is_none(), "the server exited; log:\n{}", server.log());
}

/// Sends `request` as is and checks that the server answers 4xx or closes the connection, and
/// that it still answers `/healthz` afterwards.
async fn check_hostile(server: &mut Server, name: &str, request: &[u8]) {
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    // The server may close before it has read everything; what it answered is what counts.
    let _ = stream.write_all(request).await;
    if let Some(reply) = read_reply(&mut stream, REPLY_TIMEOUT).await {
        let status = reply.head.status;
        assert!((400..500).contains(&status), "{name}: {status}, {:?}", reply.text());
    }
    assert!(server.exit_status().is_none(), "{name}: the server exited; log:\n{}", server.log());
    assert_eq!(server.health().await.status, "ok", "{name}: /healthz afterwards");
}

/// A request for `/healthz` with one header of `bytes` bytes.
fn huge_header(bytes: usize) -> Vec<u8> {
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ".to_vec();
    request.resize(request.len() + bytes, b'a');
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    request
}

#[tokio::test]
async fn hostile_bytes_get_a_4xx_or_a_closed_connection_and_never_crash_the_server() {
    let mut server = Server::start().await;
    let chunked = "POST /insert HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
                   Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases: [(&str, Vec<u8>); 8] = [
        ("garbage", b"\x16\x03\x01\x02\x00\xff\xfe not http at all\r\n\r\n".to_vec()),
        ("NUL in the request line", b"GET /heal\0thz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("NUL in a header name", b"GET /healthz HTTP/1.1\r\nX-A\0: b\r\n\r\n".to_vec()),
        ("a header without a colon", b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n".to_vec()),
        ("a header over 1 MiB", huge_header(1024 * 1024)),
        ("an invalid chunk size", format!("{chunked}zz\r\n{{}}\r\n0\r\n\r\n").into_bytes()),
        ("a chunk longer than it says", format!("{chunked}2\r\n{{\"e\r\n0\r\n\r\n").into_bytes()),
        (
            "a Content-Length that is not a number",
            b"POST /insert HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}".to_vec(),
        ),
    ];
    for (name, request) in cases {
        check_hostile(&mut server, name, &request).await;
    }
}

#[tokio::test]
async fn a_request_header_over_64_kib_gets_a_4xx_or_a_closed_connection() {
    let mut server = Server::start().await;
    check_hostile(&mut server, "a header of 65 KiB", &huge_header(65 * 1024)).await;
}
