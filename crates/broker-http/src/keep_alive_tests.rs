//! Publishers' keep-alive connections over real loopback sockets (`loopback.rs`): many inserts
//! on one connection, pipelining, the handing over to hyper at a request boundary, closes asked
//! for or forced, and the limits.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::HttpConfig;
use crate::loopback::{PATIENCE, Reply, Server};

/// A plain insert of `event` with `extra` header lines.
fn insert_with(event: &str, extra: &str) -> Vec<u8> {
    let body = format!(r#"{{"event":"{event}","data":{{"n":1}}}}"#);
    format!(
        "POST /insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn insert(event: &str) -> Vec<u8> {
    insert_with(event, "")
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// Checks that `reply` is the stored version of `event`, numbered `id`, on an open connection.
fn check_stored(reply: Option<Reply>, event: &str, id: u64) {
    let reply = reply.expect("an answer");
    assert_eq!(reply.status, 201, "{reply:?}");
    assert!(!reply.closes(), "the connection stays open: {reply:?}");
    let json = reply.json();
    assert_eq!((json["event"].as_str(), json["id"].as_u64()), (Some(event), Some(id)), "{json}");
}

#[tokio::test]
async fn many_inserts_are_answered_one_after_another_on_one_connection() {
    let server = Server::start(HttpConfig::default()).await;
    let mut client = server.connect().await;
    for id in 1..=300 {
        client.send(&insert("a")).await;
        check_stored(client.reply().await, "a", id);
    }
    client.send(HEALTHZ).await;
    let health = client.reply().await.expect("an answer");
    assert_eq!(health.json()["last_id"], 300, "{health:?}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(HttpConfig::default()).await;
    let mut client = server.connect().await;
    let events: Vec<String> = (0..50).map(|n| format!("e{n}")).collect();
    let pipeline: Vec<u8> = events.iter().flat_map(|event| insert(event)).collect();
    // In one write: the server reads several requests at once.
    client.send(&pipeline).await;
    for (id, event) in (1..).zip(&events) {
        check_stored(client.reply().await, event, id);
    }
}

#[tokio::test]
async fn bodies_of_any_size_follow_one_another_one_by_one_or_pipelined() {
    let server = Server::start(HttpConfig::default()).await;
    let sizes = [10, 300_000, 10, 70_000, 1, 65_536, 10];
    let request = |size: usize| {
        let body = format!(r#"{{"event":"s{size}","data":"{}"}}"#, "x".repeat(size));
        let head = format!(
            "POST /insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        [head.into_bytes(), body.into_bytes()].concat()
    };
    let mut client = server.connect().await;
    for (id, size) in (1..).zip(sizes) {
        client.send(&request(size)).await;
        check_stored(client.reply().await, &format!("s{size}"), id);
    }
    // Pipelined, the answers (which echo the data) stay well within what the sockets buffer, as
    // the client reads only once it has written everything.
    let pipelined = [10, 70_000, 1, 10];
    let pipeline: Vec<u8> = pipelined.iter().flat_map(|&size| request(size)).collect();
    client.send(&pipeline).await;
    for (id, size) in (sizes.len() as u64 + 1..).zip(pipelined) {
        let reply = client.reply().await;
        check_stored(reply, &format!("s{size}"), id);
    }
}

#[tokio::test]
async fn other_requests_on_an_insert_connection_are_served_by_hyper_from_that_request_on() {
    let server = Server::start(HttpConfig::default()).await;
    // One after the other, then all at once.
    let mut client = server.connect().await;
    client.send(&insert("a")).await;
    check_stored(client.reply().await, "a", 1);
    client.send(HEALTHZ).await;
    let health = client.reply().await.expect("an answer");
    assert_eq!((health.status, health.json()["last_id"].as_u64()), (200, Some(1)), "{health:?}");
    client.send(&insert("b")).await;
    check_stored(client.reply().await, "b", 2);

    let mut client = server.connect().await;
    client.send(&[insert("c"), HEALTHZ.to_vec(), insert("d")].concat()).await;
    check_stored(client.reply().await, "c", 3);
    let health = client.reply().await.expect("an answer");
    assert_eq!((health.status, health.json()["last_id"].as_u64()), (200, Some(3)), "{health:?}");
    check_stored(client.reply().await, "d", 4);

    // Inserts that are not plain: chunked, `Expect: 100-continue`, HTTP/1.0.
    let mut client = server.connect().await;
    client.send(&insert("e")).await;
    check_stored(client.reply().await, "e", 5);
    let body = r#"{"event":"f","data":1}"#;
    let chunked = format!(
        "POST /insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    client.send(chunked.as_bytes()).await;
    check_stored(client.reply().await, "f", 6);
    client.send(&insert_with("g", "Expect: 100-continue\r\n")).await;
    check_stored(client.reply().await, "g", 7);
    let old = String::from_utf8(insert("h")).expect("ASCII").replace("HTTP/1.1", "HTTP/1.0");
    client.send(old.as_bytes()).await;
    let reply = client.reply().await.expect("an answer");
    assert_eq!(reply.status, 201, "{reply:?}");
    client.closed().await;
}

#[tokio::test]
async fn malformed_and_oversized_heads_after_an_insert_get_400_and_431() {
    let server = Server::start(HttpConfig::default()).await;
    let padding = "p".repeat(70 * 1024);
    let huge = insert_with("b", &format!("X-Padding: {padding}\r\n"));
    // httparse reads this head, and it looks like a plain insert; `http`'s URI refuses the `<`.
    // Its body is a request of its own, which would be answered `200` if the head were lost.
    let refused_head = format!(
        "POST /insert?a<b HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        HEALTHZ.len()
    );
    let refused_uri = [refused_head.as_bytes(), HEALTHZ].concat();
    let cases = [
        (b"POST /insert HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n".to_vec(), 400),
        // A byte that no header value may hold (DEL), in a head that is otherwise a plain insert.
        (insert_with("c", "X-Note: a\x7fb\r\n"), 400),
        (huge, 431),
        (refused_uri, 400),
    ];
    for (request, status) in cases {
        let mut client = server.connect().await;
        client.send(&insert("a")).await;
        assert_eq!(client.reply().await.expect("an answer").status, 201);
        // The server may close before it has read all of an oversized head.
        let _ = client.stream.write_all(&request).await;
        let reply = client.reply().await.expect("an answer");
        assert_eq!(reply.status, status, "{reply:?}");
    }
}

#[tokio::test]
async fn connection_close_from_the_client_is_honoured() {
    let server = Server::start(HttpConfig::default()).await;
    let mut client = server.connect().await;
    client.send(&insert("a")).await;
    assert_eq!(client.reply().await.expect("an answer").header("connection"), None);
    client.send(&insert_with("b", "Connection: close\r\n")).await;
    let reply = client.reply().await.expect("an answer");
    assert_eq!(reply.status, 201, "{reply:?}");
    assert!(reply.closes(), "{reply:?}");
    client.closed().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_it_is_read_and_the_client_still_sending_reads_413()
{
    let config = HttpConfig { max_body: 1024, ..HttpConfig::default() };
    let server = Server::start(config).await;
    let data = "x".repeat(4 * 1024 * 1024);
    let body = format!(r#"{{"event":"big","data":"{data}"}}"#);
    let head = format!(
        "POST /insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    // As the first request of a connection, and after an insert.
    for first in [false, true] {
        let mut client = server.connect().await;
        if first {
            client.send(&insert("a")).await;
            assert_eq!(client.reply().await.expect("an answer").status, 201);
        }
        // Like many clients, it writes the whole request, more than the socket buffers hold,
        // before it reads: the answer must survive the server closing with the body unread.
        client.send(&[head.as_bytes(), body.as_bytes()].concat()).await;
        let reply = client.reply().await.expect("an answer, not a reset");
        assert_eq!(reply.status, 413, "{reply:?}");
        assert!(reply.closes(), "{reply:?}");
        client.closed().await;
    }
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_at_the_body_timeout_and_the_connection_closes() {
    let timeout = Duration::from_millis(300);
    let server = Server::start(HttpConfig { body_timeout: timeout, ..HttpConfig::default() }).await;
    let mut client = server.connect().await;
    client.send(&insert("a")).await;
    check_stored(client.reply().await, "a", 1);
    let request = insert("b");
    let started = Instant::now();
    client.send(&request[..request.len() - 5]).await;
    let reply = client.reply().await.expect("an answer");
    let waited = started.elapsed();
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(reply.closes(), "{reply:?}");
    assert!(waited >= timeout, "answered after {waited:?}");
    client.closed().await;
}

#[tokio::test]
async fn a_publisher_that_stops_reading_its_answers_is_disconnected_at_the_write_timeout() {
    let timeout = Duration::from_millis(300);
    let server =
        Server::start(HttpConfig { write_timeout: timeout, ..HttpConfig::default() }).await;
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    // Answers echo the data: 200 of them are far more than the sockets buffer.
    const INSERTS: usize = 200;
    let body = format!(r#"{{"event":"a","data":"{}"}}"#, "x".repeat(100_000));
    let request = format!(
        "POST /insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let writing = tokio::spawn(async move {
        for _ in 0..INSERTS {
            if writer.write_all(request.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    // The client reads nothing for a while: the server's write stays blocked.
    tokio::time::sleep(timeout * 5).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut received)).await;
    let read = read.expect("the server closed the connection");
    if let Err(error) = read {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "read: {error}");
    }
    let answers = String::from_utf8_lossy(&received).matches("HTTP/1.1 201 ").count();
    assert!(answers < INSERTS, "{answers} answers");
    writing.await.expect("the writer ends");
}

#[tokio::test]
async fn an_idle_connection_closes_at_the_header_timeout_as_it_does_through_hyper() {
    let timeout = Duration::from_millis(300);
    let config = HttpConfig { header_read_timeout: timeout, ..HttpConfig::default() };
    let server = Server::start(config).await;
    // A connection on the keep-alive loop, then one through hyper from its first request.
    for (request, status) in [(insert("a"), 201), (HEALTHZ.to_vec(), 200)] {
        let mut client = server.connect().await;
        client.send(&request).await;
        assert_eq!(client.reply().await.expect("an answer").status, status);
        let waited = client.closed().await;
        assert!(waited >= timeout - Duration::from_millis(50), "closed after {waited:?}");
    }
    // A request that keeps its connection busy past the timeout does not close it: the timeout
    // counts from the previous answer, for each head.
    let mut client = server.connect().await;
    for id in 2..8 {
        tokio::time::sleep(timeout / 2).await;
        client.send(&insert("b")).await;
        check_stored(client.reply().await, "b", id);
    }
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once_and_answers_requests_in_flight() {
    let config = HttpConfig { shutdown_timeout: Duration::from_secs(30), ..HttpConfig::default() };
    let mut server = Server::start(config).await;
    let mut idle = server.connect().await;
    idle.send(&insert("a")).await;
    check_stored(idle.reply().await, "a", 1);
    // An insert whose body is still coming when shutdown begins, after one answered.
    let mut busy = server.connect().await;
    busy.send(&insert("b")).await;
    check_stored(busy.reply().await, "b", 2);
    let request = insert("c");
    let (head_and_some, rest) = request.split_at(request.len() - 5);
    busy.send(head_and_some).await;
    // Time for the server to take the head in: from then on, the request is in flight.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.shut_down();
    idle.closed().await;
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    assert!(busy.open_after(Duration::from_millis(100)).await, "the busy one waits for its body");
    busy.send(rest).await;
    let reply = busy.reply().await.expect("an answer");
    assert_eq!(reply.status, 201, "{reply:?}");
    assert!(reply.closes(), "{reply:?}");
    busy.closed().await;
    let served = tokio::time::timeout(PATIENCE, server.served).await;
    served.expect("shutdown ends well before its deadline").expect("the accept loop");
    assert!(started.elapsed() < Duration::from_secs(5), "shut down in {:?}", started.elapsed());
}

/// An insert served from the bytes of its request (`buffered_insert.rs`) is answered as
/// `handle` answers it through hyper: the same status, header lines and body, token, CORS and
/// idempotency included.
#[tokio::test]
async fn inserts_served_from_the_buffer_are_answered_as_through_hyper() {
    use broker_auth::{Claims, Pattern, Scopes, SigningKey, Verifier};

    const SECRET: &[u8] = b"a keep-alive test secret of 32 bytes or more";
    let claims = Claims {
        sub: Some("publisher".into()),
        exp: 4_102_444_800, // 2100-01-01
        nbf: None,
        iat: None,
        aud: None,
        iss: None,
        broker: Scopes { insert: vec![Pattern::new("ok.*")], ..Scopes::default() },
    };
    let token = SigningKey::hs256(SECRET).sign(&claims).expect("sign");
    let config = HttpConfig {
        // A cookie name makes allowed origins get `Access-Control-Allow-Credentials`.
        auth: Some(Verifier::hs256(SECRET).cookie("t")),
        allow_origin: "http://page".parse().expect("an origin"),
        ..HttpConfig::default()
    };
    let server = Server::start(config).await;
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let request = |event: &str, extra: &str| insert_with(event, &format!("{bearer}{extra}"));
    let cases = [
        ("stored, from an allowed origin", request("ok.a", "Origin: http://page\r\n")),
        ("stored, from another origin", request("ok.b", "Origin: http://elsewhere\r\n")),
        ("stored, with a key", request("ok.c", "Idempotency-Key: k1\r\n")),
        ("stored again under the same key", request("ok.c", "Idempotency-Key: k1\r\n")),
        ("an event out of the token's scope", request("no", "Origin: http://page\r\n")),
        ("two keys", request("ok.d", "Idempotency-Key: a\r\nIdempotency-Key: b\r\n")),
        ("another scheme", insert_with("ok.e", "Authorization: Basic eDp5\r\n")),
        ("no token", insert_with("ok.f", "")),
        ("a token in the query", {
            let query = format!("/insert?access_token={token}");
            let request = String::from_utf8(insert("ok.g")).expect("ASCII");
            request.replacen("/insert", &query, 1).into_bytes()
        }),
        ("another content type", {
            let request = String::from_utf8(request("ok.h", "")).expect("ASCII");
            request.replace("application/json", "text/plain").into_bytes()
        }),
        ("malformed JSON", {
            let body = r#"{"event":"ok.i","data":}"#;
            format!(
                "POST /insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{bearer}\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }),
    ];
    // What an answer says, but for its date and the id and time a new version is given.
    let seen = |reply: Reply| {
        let mut headers = reply.headers;
        headers.retain(|(name, _)| name != "date");
        headers.sort();
        let mut body = serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null);
        let id = body.get("id").and_then(serde_json::Value::as_u64);
        for field in ["id", "timestamp"] {
            body.as_object_mut().and_then(|body| body.remove(field));
        }
        (reply.status, headers, body, id)
    };
    let mut buffered = server.connect().await;
    buffered.send(&insert_with("ok.first", &bearer)).await;
    assert_eq!(buffered.reply().await.expect("an answer").status, 201);
    let mut hyper = server.connect().await;
    hyper.send(HEALTHZ).await;
    assert_eq!(hyper.reply().await.expect("an answer").status, 200);
    let mut ids = Vec::new();
    for (case, request) in cases {
        buffered.send(&request).await;
        let (status, headers, body, id) = seen(buffered.reply().await.expect("an answer"));
        hyper.send(&request).await;
        let through_hyper = seen(hyper.reply().await.expect("an answer"));
        assert_eq!(
            (status, &headers, &body),
            (through_hyper.0, &through_hyper.1, &through_hyper.2),
            "{case}"
        );
        ids.push((case, status, id, through_hyper.3));
    }
    let status = |case: &str| ids.iter().find(|(name, ..)| *name == case).map(|found| found.1);
    assert_eq!(status("stored, from an allowed origin"), Some(201));
    assert_eq!(status("an event out of the token's scope"), Some(403));
    assert_eq!(status("another scheme"), Some(401));
    assert_eq!(status("a token in the query"), Some(201));
    assert_eq!(status("another content type"), Some(415));
    assert_eq!(status("malformed JSON"), Some(400));
    // The key's second use answers with the version its first use stored, on either path.
    let [first, again] = ["stored, with a key", "stored again under the same key"]
        .map(|case| ids.iter().find(|(name, ..)| *name == case).expect("a case"));
    assert_eq!((again.2, again.3), (first.2, first.3));
}
