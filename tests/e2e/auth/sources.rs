//! Where tokens come from besides `Authorization`: a cookie and the `access_token` query
//! parameter, which must never reach the log; and CORS with credentials for the cookie.

use serde_json::json;

use super::{Answer, Wire, admin, admin_insert, claims, get, send, sign};
use crate::support::Server;

const ORIGIN: &str = "https://app.example";

/// A server that also reads tokens from the cookie `broker_token` and allows [`ORIGIN`].
async fn start_with_cookie() -> Server {
    super::start(&["--jwt-cookie", "broker_token", "--allow-origin", ORIGIN]).await
}

#[tokio::test]
async fn tokens_are_read_from_the_cookie() {
    let server = start_with_cookie().await;
    let token = admin();
    let cookie = format!("theme=dark; broker_token={token}; other=1");
    let cookie = [("cookie", cookie.as_str())];
    let body = json!({"event": "orders.a", "data": 1});
    send(&server, "POST", "/insert", &cookie, Some(&body)).await.expect_status(201);
    let audit = send(&server, "GET", "/audit/orders.a", &cookie, None).await;
    audit.expect_status(200);
    assert_eq!(audit.json().as_array().map(Vec::len), Some(1), "{audit:?}");
    let mut stream = Wire::open(&server, "/events", &cookie).await;
    assert_eq!(stream.events_until("orders.a").await, ["orders.a"]);

    // A bad token in the cookie is refused; a token in another cookie is not looked at.
    for (cookie, invalid) in
        [("broker_token=not-a-jwt", true), (&*format!("session={token}"), false)]
    {
        let answer = send(&server, "POST", "/insert", &[("cookie", cookie)], Some(&body)).await;
        if invalid {
            answer.expect_invalid_token();
        } else {
            answer.expect_missing_token();
        }
    }
    // The cookie's scopes apply as a header's would.
    let narrow = format!("broker_token={}", sign(&claims(&["orders.*"], &[], &[])));
    let secret = json!({"event": "secret", "data": 1});
    let answer = send(&server, "POST", "/insert", &[("cookie", &narrow)], Some(&secret)).await;
    answer.expect_insufficient_scope();
}

#[tokio::test]
async fn tokens_are_read_from_the_query_and_never_logged() {
    let server =
        Server::start_with(&[], &[("BROKER_JWT_SECRET", super::SECRET), ("RUST_LOG", "debug")])
            .await;
    let token = admin();
    let body = json!({"event": "orders.a", "data": 1});
    let insert = format!("/insert?access_token={token}");
    send(&server, "POST", &insert, &[], Some(&body)).await.expect_status(201);
    let audit = get(&server, &format!("/audit/orders.a?access_token={token}&limit=5"), None).await;
    audit.expect_status(200);
    assert_eq!(audit.json().as_array().map(Vec::len), Some(1), "{audit:?}");
    let mut stream = Wire::open(&server, &format!("/events?access_token={token}"), &[]).await;
    assert_eq!(stream.events_until("orders.a").await, ["orders.a"]);
    drop(stream);
    let bad = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.bm90LWEtc2lnbmF0dXJl";
    get(&server, &format!("/events?access_token={bad}"), None).await.expect_invalid_token();
    let narrow = sign(&claims(&[], &["orders.*"], &[]));
    let path = format!("/events?event=secret&access_token={narrow}");
    get(&server, &path, None).await.expect_insufficient_scope();
    // The insert and the subscription are logged at debug level; the tokens are not, in whole
    // or in part.
    admin_insert(&server, "orders.b", json!(2)).await;
    let log = server.log();
    assert!(log.contains("DEBUG"), "RUST_LOG=debug logs debug lines:\n{log}");
    for secret in [token.as_str(), bad, narrow.as_str()] {
        let signature = secret.rsplit('.').next().expect("a JWT has parts");
        assert!(!log.contains(signature), "the log holds a token's signature {signature}:\n{log}");
    }
}

/// Checks the CORS headers of an answer to a request from `origin`.
fn check_cors(answer: &Answer, origin: &str, allowed: bool) {
    let what = &answer.request;
    let expected = allowed.then_some(origin);
    assert_eq!(answer.header("access-control-allow-origin"), expected, "{what}: {answer:?}");
    let credentials = allowed.then_some("true");
    assert_eq!(
        answer.header("access-control-allow-credentials"),
        credentials,
        "{what}: {answer:?}"
    );
    assert!(answer.header_list("vary").contains(&"origin".into()), "{what}: {answer:?}");
}

#[tokio::test]
async fn cookie_tokens_allow_credentials_for_listed_origins_only() {
    let server = start_with_cookie().await;
    let cookie = format!("broker_token={}", admin());
    let body = json!({"event": "orders.a", "data": 1});
    for (origin, allowed) in [(ORIGIN, true), ("https://evil.example", false), ("null", false)] {
        let with_cookie = [("origin", origin), ("cookie", cookie.as_str())];
        let insert = send(&server, "POST", "/insert", &with_cookie, Some(&body)).await;
        insert.expect_status(201);
        check_cors(&insert, origin, allowed);
        // Errors carry the headers too, so that a page can read why it was refused.
        let refused = send(&server, "POST", "/insert", &[("origin", origin)], Some(&body)).await;
        refused.expect_missing_token();
        check_cors(&refused, origin, allowed);
        let health = send(&server, "GET", "/healthz", &[("origin", origin)], None).await;
        check_cors(&health, origin, allowed);
        let stream = Wire::open(&server, "/events", &with_cookie).await;
        let head = stream.head();
        let allow_origin = format!("access-control-allow-origin: {origin}");
        assert_eq!(head.contains(&allow_origin), allowed, "{head}");
        assert_eq!(head.contains("access-control-allow-credentials: true"), allowed, "{head}");
    }
    // A page sending `Authorization` needs the preflight to allow it.
    for (method, path, headers) in [
        ("POST", "/insert", "authorization, content-type"),
        ("GET", "/events", "authorization, last-event-id"),
        ("GET", "/audit/orders.a", "authorization"),
    ] {
        let request = [
            ("origin", ORIGIN),
            ("access-control-request-method", method),
            ("access-control-request-headers", headers),
        ];
        let preflight = send(&server, "OPTIONS", path, &request, None).await;
        preflight.expect_status(204);
        check_cors(&preflight, ORIGIN, true);
        let allowed = preflight.header_list("access-control-allow-headers");
        for header in headers.split(", ") {
            assert!(allowed.contains(&header.to_string()), "{method} {path}: {preflight:?}");
        }
    }
}
