//! Errors: each refused request gets its status, a JSON body with the stable `error` code and a
//! message that names what was wrong, and stores nothing.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Server, Sse, exchange};

/// The limits the error server runs with, small so that the table stays readable.
const MAX_BODY: usize = 1024;
const SERVER_ARGS: &[&str] = &["--max-body", "1024", "--max-event-name", "16"];

/// One refused request.
struct Case {
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: &'static [u8],
    status: u16,
    code: &'static str,
    /// Something the message must contain, such as the field's name.
    mentions: Option<&'static str>,
    /// A method the `Allow` header must list.
    allow: Option<&'static str>,
    /// A header sent besides `Content-Type`.
    header: Option<(&'static str, &'static str)>,
}

const JSON: Option<&str> = Some("application/json");

const fn insert(body: &'static [u8], code: &'static str, mentions: Option<&'static str>) -> Case {
    Case {
        method: "POST",
        path: "/insert",
        content_type: JSON,
        body,
        status: 400,
        code,
        mentions,
        allow: None,
        header: None,
    }
}

const fn typed(content_type: Option<&'static str>) -> Case {
    Case {
        content_type,
        status: 415,
        code: "unsupported_media_type",
        ..insert(br#"{"event":"e","data":1}"#, "", None)
    }
}

/// A body sent with the content codings `codings`, of which `refused` must be named.
const fn encoded(codings: &'static str, refused: &'static str) -> Case {
    Case { header: Some(("content-encoding", codings)), mentions: Some(refused), ..typed(JSON) }
}

const fn route(
    method: &'static str,
    path: &'static str,
    status: u16,
    allow: Option<&'static str>,
) -> Case {
    let code = if status == 404 { "not_found" } else { "method_not_allowed" };
    let (content_type, body, mentions, header) = (None, b"", None, None);
    Case { method, path, content_type, body, status, code, mentions, allow, header }
}

const CASES: &[Case] = &[
    // The body is not JSON.
    insert(br#"{"event": "e", "data": "#, "malformed_json", None),
    insert(b"not json", "malformed_json", None),
    insert(b"", "malformed_json", None),
    insert(br#"{'event':'e','data':1}"#, "malformed_json", None),
    insert(br#"{"event":"e","data":nul}"#, "malformed_json", None),
    insert(br#"{"event":"e","data":1} trailing"#, "malformed_json", None),
    insert(br#"{"event":"e","data":1}{"event":"e","data":2}"#, "malformed_json", None),
    insert(b"{\"event\":\"e\",\"data\":\"\xff\xfe\"}", "malformed_json", None),
    // Lone UTF-16 surrogate escapes stand for no character (I-JSON refuses them).
    insert(br#"{"event":"e","data":"\ud800"}"#, "malformed_json", Some("surrogate")),
    insert(br#"{"event":"e","data":{"k":["\udfff"]}}"#, "malformed_json", Some("surrogate")),
    insert(br#"{"event":"e","data":"\ud83e\u0041"}"#, "malformed_json", Some("surrogate")),
    // A field is missing, of the wrong type, or unknown.
    insert(br#"{"data":1}"#, "invalid_field", Some("event")),
    insert(br#"{"event":"e"}"#, "invalid_field", Some("data")),
    insert(br#"{"event":5,"data":1}"#, "invalid_field", Some("event")),
    insert(br#"{"event":null,"data":1}"#, "invalid_field", Some("event")),
    insert(br#"{"event":["e"],"data":1}"#, "invalid_field", Some("event")),
    insert(br#"{"event":{"name":"e"},"data":1}"#, "invalid_field", Some("event")),
    insert(br#"{"event":"e","data":1,"extra":true}"#, "invalid_field", Some("extra")),
    insert(br#"{"Event":"e","event":"e","data":1}"#, "invalid_field", Some("Event")),
    // The event name is empty, too long (16 bytes here) or has a control character.
    insert(br#"{"event":"","data":1}"#, "invalid_event_name", None),
    insert(br#"{"event":"seventeen-bytes-x","data":1}"#, "invalid_event_name", None),
    insert("{\"event\":\"ééééééééé\",\"data\":1}".as_bytes(), "invalid_event_name", None),
    insert(br#"{"event":"e\nid: 7","data":1}"#, "invalid_event_name", None),
    insert(br#"{"event":"e\r\ndata: 1","data":1}"#, "invalid_event_name", None),
    insert(br#"{"event":"e\u0000","data":1}"#, "invalid_event_name", None),
    insert(br#"{"event":"tab\there","data":1}"#, "invalid_event_name", None),
    insert(br#"{"event":"del\u007f","data":1}"#, "invalid_event_name", None),
    insert(br#"{"event":"nel\u0085","data":1}"#, "invalid_event_name", None),
    insert("{\"event\":\"c1\u{9f}\",\"data\":1}".as_bytes(), "invalid_event_name", None),
    // The body is not declared as JSON.
    typed(None),
    typed(Some("text/plain")),
    typed(Some("text/json")),
    typed(Some("application/x-www-form-urlencoded")),
    typed(Some("multipart/form-data; boundary=x")),
    // Bytes the broker would store without being able to read them.
    typed(Some("application/json; charset=utf-16")),
    typed(Some("application/json; charset=\"latin1\"")),
    encoded("gzip", "gzip"),
    encoded("identity, br", "br"),
    // No such route.
    route("GET", "/", 404, None),
    route("GET", "/nowhere", 404, None),
    route("GET", "/Events", 404, None),
    route("GET", "/audit", 404, None),
    route("GET", "/audit/a/b", 404, None),
    route("GET", "/insert/more", 404, None),
    route("GET", "/events/more", 404, None),
    // The route exists, the method does not.
    route("GET", "/insert", 405, Some("POST")),
    route("PUT", "/insert", 405, Some("POST")),
    route("POST", "/events", 405, Some("GET")),
    route("DELETE", "/audit/e", 405, Some("GET")),
    route("POST", "/healthz", 405, Some("GET")),
];

/// Sends `case` and describes every way the answer differs from the expected error, including
/// a version stored by a refused request.
async fn check(server: &Server, case: &Case) -> Vec<String> {
    let content_type = case.content_type.map(|value| ("content-type", value));
    let headers: Vec<_> = content_type.into_iter().chain(case.header).collect();
    let body = (!case.body.is_empty()).then(|| case.body.to_vec());
    let reply = server.request(case.method, case.path, &headers, body).await;
    let json: Option<Value> = serde_json::from_str(&reply.body).ok();
    let code = json.as_ref().and_then(|json| json["error"].as_str());
    let message = json.as_ref().and_then(|json| json["message"].as_str()).unwrap_or_default();
    let content_type = reply.header("content-type").unwrap_or_default();
    let allow = reply.header_list("allow");

    let mut problems = Vec::new();
    if (reply.status, code) != (case.status, Some(case.code)) {
        problems.push(format!("expected {} {}", case.status, case.code));
    }
    if !content_type.starts_with("application/json") || message.is_empty() {
        problems.push("expected a JSON body with a message".to_string());
    }
    if let Some(mentions) = case.mentions.filter(|mentions| !message.contains(mentions)) {
        problems.push(format!("expected the message to name {mentions}"));
    }
    if let Some(method) = case.allow.filter(|method| !allow.contains(&method.to_ascii_lowercase()))
    {
        problems.push(format!("expected Allow to list {method}"));
    }
    let last_id = server.health().await.last_id;
    if last_id != 0 {
        problems.push(format!("expected nothing stored, the last id is {last_id}"));
    }
    if problems.is_empty() {
        return problems;
    }
    let request = format!(
        "{} {} ({:?}) {:?}",
        case.method,
        case.path,
        case.content_type,
        String::from_utf8_lossy(case.body)
    );
    vec![format!(
        "{request}: {}; got {} {:?} Allow {allow:?}",
        problems.join(", "),
        reply.status,
        reply.body
    )]
}

#[tokio::test]
async fn refused_requests_get_their_status_and_error_code_and_store_nothing() {
    let server = Server::start_with(SERVER_ARGS, &[]).await;
    let mut sse = Sse::snapshot(&server).await;
    let mut failures = Vec::new();
    for case in CASES {
        failures.extend(check(&server, case).await);
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    assert!(server.audit("e").await.is_empty());
    sse.expect_no_event(Duration::from_millis(200)).await;
}

/// An insert body of exactly `len` bytes.
fn body_of(len: usize) -> Vec<u8> {
    let frame = r#"{"event":"big","data":""}"#;
    let body = format!(r#"{{"event":"big","data":"{}"}}"#, "x".repeat(len - frame.len()));
    assert_eq!(body.len(), len);
    body.into_bytes()
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413_and_at_the_limit_accepted() {
    let server = Server::start_with(SERVER_ARGS, &[]).await;
    let headers = [("content-type", "application/json")];
    let reply = server.request("POST", "/insert", &headers, Some(body_of(MAX_BODY + 1))).await;
    reply.expect_error(413, "payload_too_large");
    let reply = server.request("POST", "/insert", &headers, Some(body_of(MAX_BODY * 64))).await;
    reply.expect_error(413, "payload_too_large");

    // Without a Content-Length, the limit holds for a chunked body as it arrives.
    let body = body_of(MAX_BODY + 1);
    let (head, tail) = body.split_at(MAX_BODY / 2);
    let mut request = format!(
        "POST /insert HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr()
    )
    .into_bytes();
    for chunk in [head, tail] {
        request.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    let reply = exchange(server.addr(), &request).await;
    assert_eq!(reply.head.status, 413, "{:?} {}", reply.head, reply.text());
    let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("a JSON error");
    assert_eq!(json["error"], "payload_too_large");
    assert_eq!(server.health().await.last_id, 0, "a body over the limit stored something");

    let reply = server.request("POST", "/insert", &headers, Some(body_of(MAX_BODY))).await;
    assert_eq!(reply.status, 201, "a body of exactly --max-body bytes: {reply}");
    assert_eq!(server.audit("big").await.len(), 1);
}

#[tokio::test]
async fn an_http_1_1_request_without_host_is_400() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start().await;
    let cases: [(&[u8], u16); 3] = [
        (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (b"GET /events HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200),
    ];
    for (request, status) in cases {
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let reply = crate::support::read_reply(&mut stream, Duration::from_secs(10)).await;
        let reply = reply.expect("an answer");
        let what = String::from_utf8_lossy(request);
        assert_eq!(reply.head.status, status, "{what}: {reply:?}");
        if status == 400 {
            let error: Value = serde_json::from_str(&reply.text()).expect("a JSON body");
            assert_eq!(error["error"], "missing_host", "{what}: {error}");
        }
    }
}
