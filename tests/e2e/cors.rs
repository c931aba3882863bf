//! CORS: `Access-Control-Allow-Origin` on every response, allow-lists, and preflight requests.

use crate::support::{Server, Sse};

/// One request of each kind a browser makes, successful or not: `(method, path, content type,
/// body, expected status)`.
const REQUESTS: &[(&str, &str, Option<&str>, &str, u16)] = &[
    ("GET", "/healthz", None, "", 200),
    ("POST", "/insert", Some("application/json"), r#"{"event":"cors","data":1}"#, 201),
    ("POST", "/insert", Some("application/json"), "{not json", 400),
    ("POST", "/insert", Some("text/plain"), r#"{"event":"cors","data":1}"#, 415),
    ("GET", "/audit/cors", None, "", 200),
    ("GET", "/audit/cors?limit=0", None, "", 400),
    ("GET", "/nowhere", None, "", 404),
    ("GET", "/insert", None, "", 405),
];

/// Sends every request of [`REQUESTS`] and opens `/events`, with `origin` as the `Origin`
/// header, and checks the `Access-Control-Allow-Origin` (and `Vary`) each response carries.
async fn check(server: &Server, origin: Option<&str>, allowed: Option<&str>) {
    let vary = allowed.is_some_and(|allowed| allowed != "*");
    for &(method, path, content_type, body, status) in REQUESTS {
        let mut headers = Vec::new();
        headers.extend(origin.map(|origin| ("origin", origin)));
        headers.extend(content_type.map(|content_type| ("content-type", content_type)));
        let body = (!body.is_empty()).then(|| body.as_bytes().to_vec());
        let reply = server.request(method, path, &headers, body).await;
        assert_eq!(reply.status, status, "{method} {path}: {reply}");
        let what = format!("{method} {path} from {origin:?}");
        assert_eq!(reply.header("access-control-allow-origin"), allowed, "{what}: {reply}");
        if vary {
            assert!(reply.header_list("vary").contains(&"origin".into()), "{what}: {reply}");
        }
    }
    let headers: Vec<_> = origin.map(|origin| ("Origin", origin)).into_iter().collect();
    let sse = Sse::open(server, "/events", &headers).await;
    let what = format!("GET /events from {origin:?}");
    assert_eq!(sse.head.header("access-control-allow-origin"), allowed, "{what}: {:?}", sse.head);
    if vary {
        assert!(sse.head.header_list("vary").contains(&"origin".into()), "{what}: {:?}", sse.head);
    }
}

#[tokio::test]
async fn every_route_allows_any_origin_by_default() {
    let server = Server::start().await;
    check(&server, Some("https://app.example"), Some("*")).await;
    check(&server, None, Some("*")).await;
}

#[tokio::test]
async fn listed_origins_are_echoed_with_vary_and_others_get_no_allow_origin() {
    let list = "https://a.example,https://b.example";
    let by_flag = Server::start_with(&["--allow-origin", list], &[]).await;
    let by_env = Server::start_with(&[], &[("BROKER_ALLOW_ORIGIN", list)]).await;
    for server in [&by_flag, &by_env] {
        check(server, Some("https://a.example"), Some("https://a.example")).await;
        check(server, Some("https://b.example"), Some("https://b.example")).await;
        check(server, Some("https://c.example"), None).await;
        check(server, Some("https://a.example.evil"), None).await;
        check(server, Some("http://a.example"), None).await;
    }
}

/// Checks the answer to a preflight from `origin` for `method path` asking for `headers`.
async fn preflight(server: &Server, origin: &str, method: &str, path: &str, headers: &str) {
    let request = [
        ("origin", origin),
        ("access-control-request-method", method),
        ("access-control-request-headers", headers),
    ];
    let reply = server.request("OPTIONS", path, &request, None).await;
    let what = format!("preflight of {method} {path} from {origin}");
    assert_eq!(reply.status, 204, "{what}: {reply}");
    let allowed = reply.header("access-control-allow-origin");
    assert!(allowed == Some("*") || allowed == Some(origin), "{what}: {reply}");
    let methods = reply.header_list("access-control-allow-methods");
    assert!(methods.contains(&method.to_ascii_lowercase()), "{what} allows {methods:?}");
    let allowed_headers = reply.header_list("access-control-allow-headers");
    for header in ["content-type", "last-event-id"] {
        assert!(allowed_headers.contains(&header.into()), "{what} allows {allowed_headers:?}");
    }
}

#[tokio::test]
async fn preflight_is_answered_204_with_methods_and_headers() {
    let server = Server::start().await;
    let origin = "https://app.example";
    preflight(&server, origin, "POST", "/insert", "content-type").await;
    preflight(&server, origin, "GET", "/events", "last-event-id").await;
    preflight(&server, origin, "GET", "/audit/user", "content-type").await;

    let listed = Server::start_with(&["--allow-origin", "https://a.example"], &[]).await;
    preflight(&listed, "https://a.example", "POST", "/insert", "content-type").await;
    let reply = listed
        .request(
            "OPTIONS",
            "/insert",
            &[("origin", "https://a.example"), ("access-control-request-method", "POST")],
            None,
        )
        .await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("https://a.example"), "{reply}");
    // A preflight stores nothing.
    assert!(server.audit("user").await.is_empty());
    assert_eq!(server.health().await.last_id, 0);
}
