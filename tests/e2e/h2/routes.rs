//! Every route over HTTP/2, answered as over HTTP/1.1: inserts, event streams, audit, snapshot,
//! health and metrics, with CORS headers and authorization from each place a token can be.

use serde_json::json;

use super::wait_for_metric;
use crate::auth::{self, admin, bearer, claims, sign};
use crate::support::{Frame, H2, H2_TIMEOUT, H2Events, Server};

#[tokio::test]
async fn every_route_answers_over_h2_as_over_http1() {
    let server = Server::start().await;
    let mut client = H2::connect(&server).await;

    let inserted = client.insert(r#"{"event":"user","data":{"name":"Rusty"}}"#).await;
    assert_eq!(inserted.status, 201, "{inserted:?}");
    assert_eq!(inserted.json()["data"], json!({"name": "Rusty"}));
    let id = inserted.json()["id"].as_u64().expect("an id");
    let bulk = client.insert(r#"[{"event":"order","data":1},{"event":"user","data":2}]"#).await;
    assert_eq!(bulk.status, 201, "{bulk:?}");

    let audit = client.get("/audit/user").await;
    assert_eq!(audit.status, 200, "{audit:?}");
    let data: Vec<_> =
        audit.json().as_array().expect("a list").iter().map(|v| v["data"].clone()).collect();
    assert_eq!(data, [json!({"name": "Rusty"}), json!(2)]);
    let snapshot = client.get("/snapshot").await;
    assert_eq!(snapshot.status, 200, "{snapshot:?}");
    assert_eq!(snapshot.json().as_array().map(Vec::len), Some(2), "{snapshot:?}");
    let past = client.get(&format!("/snapshot?at={id}")).await;
    assert_eq!(past.json()[0]["data"], json!({"name": "Rusty"}), "{past:?}");
    let health = client.get("/healthz").await;
    assert_eq!((health.status, health.json()["status"].clone()), (200, json!("ok")));

    // Errors are the same JSON, with the same CORS headers.
    let missing = client.get("/nowhere").await;
    assert_eq!((missing.status, missing.json()["error"].clone()), (404, json!("not_found")));
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
    let wrong = client.exchange("POST", "/insert", &[], Some(b"{}")).await.expect("an answer");
    assert_eq!(wrong.status, 415, "{wrong:?}");
    let preflight = [("origin", "https://app.example"), ("access-control-request-method", "POST")];
    let options = client.exchange("OPTIONS", "/insert", &preflight, None).await.expect("answer");
    assert_eq!(options.status, 204, "{options:?}");
    assert_eq!(options.header("access-control-allow-origin"), Some("*"));
    assert!(options.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));

    // An event stream: the same head and prelude, then the snapshot and live versions, while
    // other requests share the connection.
    let mut events = H2Events::open(&mut client, "/events", &[]).await;
    assert_eq!(events.status, 200);
    assert_eq!(events.headers["content-type"], "text/event-stream");
    assert_eq!(events.headers["broker-start"], "snapshot");
    assert_eq!(events.headers["access-control-allow-origin"], "*");
    assert_eq!(events.next_frame(H2_TIMEOUT).await, Ok(Some(Frame::Retry(3000))));
    assert_eq!(events.next_frame(H2_TIMEOUT).await, Ok(Some(Frame::Comment("snapshot".into()))));
    let snapshot: Vec<_> = [events.next_event().await, events.next_event().await]
        .iter()
        .map(|event| event.event.clone())
        .collect();
    assert_eq!(snapshot, ["order", "user"]);
    let live = client.insert(r#"{"event":"user","data":3}"#).await;
    assert_eq!(live.status, 201);
    assert_eq!(events.next_event().await.data, "3");

    // Metrics count requests over HTTP/2 by route and status like any others.
    let metrics = client.get("/metrics").await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(metrics.header("content-type").is_some_and(|t| t.starts_with("text/plain")));
    for (series, at_least) in [
        (r#"broker_http_requests_total{route="insert",status="201"}"#, 3.0),
        (r#"broker_http_requests_total{route="insert",status="415"}"#, 1.0),
        (r#"broker_http_requests_total{route="audit",status="200"}"#, 1.0),
        (r#"broker_http_requests_total{route="snapshot",status="200"}"#, 2.0),
        (r#"broker_http_requests_total{route="healthz",status="200"}"#, 1.0),
        (r#"broker_http_requests_total{route="events",status="200"}"#, 1.0),
        (r#"broker_http_requests_total{route="none",status="404"}"#, 1.0),
        ("broker_connections_open", 1.0),
    ] {
        wait_for_metric(&server, series, at_least).await;
    }
    drop(events);
    drop(client);
    wait_for_metric(&server, r#"broker_connections_closed_total{cause="closed"}"#, 1.0).await;
}

#[tokio::test]
async fn tokens_over_h2_are_read_from_the_header_the_cookie_and_the_query() {
    const ORIGIN: &str = "https://app.example";
    let server = auth::start(&["--jwt-cookie", "broker_token", "--allow-origin", ORIGIN]).await;
    let mut client = H2::connect(&server).await;
    let body = br#"{"event":"orders.a","data":1}"#;
    let json = ("content-type", "application/json");
    let origin = ("origin", ORIGIN);

    let none = client.exchange("POST", "/insert", &[json, origin], Some(body)).await;
    let none = none.expect("an answer");
    assert_eq!((none.status, none.json()["error"].clone()), (401, json!("missing_token")));
    assert_eq!(none.header("www-authenticate"), Some("Bearer realm=\"broker\""));
    assert_eq!(none.header("access-control-allow-origin"), Some(ORIGIN));

    let header = bearer(&admin());
    let headers = [json, origin, ("authorization", header.as_str())];
    let by_header = client.exchange("POST", "/insert", &headers, Some(body)).await;
    let by_header = by_header.expect("an answer");
    assert_eq!(by_header.status, 201, "{by_header:?}");
    assert_eq!(by_header.header("access-control-allow-credentials"), Some("true"));

    let cookie = format!("theme=dark; broker_token={}", admin());
    let by_cookie = client.exchange("GET", "/audit/orders.a", &[("cookie", &cookie)], None).await;
    let by_cookie = by_cookie.expect("an answer");
    assert_eq!((by_cookie.status, by_cookie.json().as_array().map(Vec::len)), (200, Some(1)));

    // A token in the query opens an event stream limited to what it may read.
    let secret = br#"{"event":"secret","data":0}"#;
    let stored = client.exchange("POST", "/insert", &headers, Some(secret)).await;
    assert_eq!(stored.expect("an answer").status, 201);
    let narrow = sign(&claims(&[], &["orders.*"], &[]));
    let path = format!("/events?access_token={narrow}");
    let mut events = H2Events::open(&mut client, &path, &[]).await;
    assert_eq!(events.status, 200);
    assert_eq!(events.next_event().await.event, "orders.a");
    let later = br#"{"event":"orders.b","data":2}"#;
    let stored = client.exchange("POST", "/insert", &headers, Some(later)).await;
    assert_eq!(stored.expect("an answer").status, 201);
    assert_eq!(events.next_event().await.event, "orders.b", "the secret event is never sent");
    let forbidden = client.get(&format!("/events?event=secret&access_token={narrow}")).await;
    assert_eq!(
        (forbidden.status, forbidden.json()["error"].clone()),
        (403, json!("insufficient_scope"))
    );
}
