//! `docs/openapi.yaml` against the real server: every answer to a set of requests covering every
//! route must be documented (status, content type, required headers, JSON body schema), and
//! every documented answer must be seen, so the description cannot drift from the server.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Server;

/// Documented answers no request here can provoke, and the tests that cover them instead.
const NOT_PROVOKED: &[(&str, &str, &str)] = &[
    // Only while the server shuts down (lifecycle and durability tests send inserts then), or
    // while a NATS JetStream database has no leader (the scale-out tests stop its servers).
    ("/insert", "post", "503"),
    // Only for a body that stalls past --body-timeout, which an HTTP client library does not
    // send: the limits tests send it over a raw socket.
    ("/insert", "post", "408"),
    // Only on a full disk: the storage-fault tests fill a small file system to provoke it.
    ("/insert", "post", "507"),
    // The server binary always makes backups; only a program that embeds the transport without
    // a backup function gets 404: broker-http's unit tests of `backup.rs` ask for one.
    ("/backup", "get", "404"),
    // Only when the copy cannot be written (a full disk): broker-http's unit tests of
    // `backup.rs` make a copy fail.
    ("/backup", "get", "500"),
];

const SECRET: &str = "openapi-test-secret-0123456789abcdef";

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("read docs/openapi.yaml");
    serde_norway::from_str(&text).expect("docs/openapi.yaml is valid YAML")
}

/// Follows a local `$ref` (`#/components/...`) if `value` is one.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local reference");
            spec.pointer(pointer).unwrap_or_else(|| panic!("{reference} is defined"))
        }
        None => value,
    }
}

/// The path template of the spec that `path` (with its query) falls under.
fn template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    if path.starts_with("/audit/") { "/audit/{event}".to_owned() } else { path.to_owned() }
}

fn token(scopes: Value) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() + 600;
    let claims = json!({ "exp": exp, "broker": scopes });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("sign")
}

struct Case {
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<&'static str>,
}

fn case(method: Method, path: &str) -> Case {
    Case { method, path: path.to_owned(), headers: Vec::new(), body: None }
}

impl Case {
    fn json(mut self, body: &'static str) -> Case {
        self.headers.push(("content-type", "application/json".to_owned()));
        self.body = Some(body);
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }
}

/// Sends `case` and checks the answer against the spec; returns what was seen.
async fn check(spec: &Value, server: &Server, case: Case) -> (String, String, String) {
    let client = reqwest::Client::new();
    let mut request = client.request(case.method.clone(), server.url(&case.path));
    for (name, value) in &case.headers {
        request = request.header(*name, value);
    }
    if let Some(body) = case.body {
        request = request.body(body);
    }
    let response = request.send().await.expect("send the request");
    let status = response.status().as_u16().to_string();
    let template = template(&case.path);
    let method = case.method.as_str().to_ascii_lowercase();
    let what = format!("{} {} -> {status}", case.method, case.path);

    if status == "405" {
        // Methods the spec does not list for the path, answered with the ones it does.
        assert!(spec["paths"][&template].get(&method).is_none(), "{what}: {method} is documented");
        let allow = response.headers()["allow"].to_str().expect("ASCII").to_ascii_lowercase();
        let mut documented: Vec<&str> = spec["paths"][&template]
            .as_object()
            .expect("path")
            .keys()
            .map(String::as_str)
            .collect();
        documented.push("options");
        let allowed: Vec<&str> = allow.split(", ").collect();
        assert_eq!(allowed, documented, "{what}: Allow lists the documented methods");
        let body: Value = response.json().await.expect("a JSON body");
        validate(spec, &json!({ "$ref": "#/components/schemas/Error" }), &body, &what);
        assert_eq!(body["error"], "method_not_allowed");
        return (template, method, status);
    }
    let operation = spec["paths"][&template]
        .get(&method)
        .unwrap_or_else(|| panic!("{what}: {method} {template} is not documented"));
    let documented = operation["responses"]
        .get(&status)
        .unwrap_or_else(|| panic!("{what}: status {status} is not documented"));
    let documented = resolve(spec, documented);

    let headers = response.headers().clone();
    if let Some(required) = documented.get("headers").and_then(Value::as_object) {
        for (name, header) in required {
            if header["required"] == json!(true) {
                assert!(headers.contains_key(name.as_str()), "{what}: header {name} is missing");
            }
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or_default().trim().to_owned());
    match (documented.get("content").and_then(Value::as_object), content_type) {
        (Some(content), Some(content_type)) => {
            let media = content
                .get(&content_type)
                .unwrap_or_else(|| panic!("{what}: content type {content_type} is not documented"));
            if content_type == "application/json" {
                let body: Value = response.json().await.expect("a JSON body");
                validate(spec, &media["schema"], &body, &what);
            }
        }
        (None, None) => {}
        (content, content_type) => {
            panic!("{what}: documented content {content:?}, answered with {content_type:?}")
        }
    }
    (template, method, status)
}

fn validate(spec: &Value, schema: &Value, body: &Value, what: &str) {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": spec["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::validator_for(&root).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(body).map(|error| error.to_string()).collect();
    assert!(errors.is_empty(), "{what}: {body} does not match the schema: {errors:?}");
}

#[tokio::test]
async fn every_answer_is_documented_and_every_documented_answer_happens() {
    let spec = spec();
    let mut seen = BTreeSet::new();

    let open = Server::start_with(&["--max-body", "256", "--max-bulk", "2"], &[]).await;
    open.insert("user", json!({ "name": "Rusty" })).await;
    open.insert("user", json!({ "name": "Ferris" })).await;
    let cases = [
        case(Method::POST, "/insert").json(r#"{"event":"user","data":{"name":"Corro"}}"#),
        case(Method::POST, "/insert")
            .json(r#"{"event":"user","data":{"name":"Keyed"}}"#)
            .header("idempotency-key", "openapi-1"),
        // The same key again: the retry answers 201 with the first version, other data a 422.
        case(Method::POST, "/insert")
            .json(r#"{"event":"user","data":{"name":"Keyed"}}"#)
            .header("idempotency-key", "openapi-1"),
        case(Method::POST, "/insert")
            .json(r#"{"event":"user","data":{"name":"Other"}}"#)
            .header("idempotency-key", "openapi-1"),
        // Arrays: stored together and answered as an array; retried whole under one key; empty,
        // over --max-bulk, or with a bad element, refused.
        case(Method::POST, "/insert").json(r#"[{"event":"user","data":1},{"event":"b","data":2}]"#),
        case(Method::POST, "/insert")
            .json(r#"[{"event":"user","data":3},{"event":"b","data":4}]"#)
            .header("idempotency-key", "openapi-2"),
        case(Method::POST, "/insert")
            .json(r#"[{"event":"user","data":3},{"event":"b","data":4}]"#)
            .header("idempotency-key", "openapi-2"),
        case(Method::POST, "/insert")
            .json(r#"[{"event":"user","data":3},{"event":"b","data":5}]"#)
            .header("idempotency-key", "openapi-2"),
        case(Method::POST, "/insert").json("[]"),
        case(Method::POST, "/insert")
            .json(r#"[{"event":"a","data":1},{"event":"b","data":2},{"event":"c","data":3}]"#),
        case(Method::POST, "/insert").json(r#"[{"event":"a","data":1},{"event":"","data":2}]"#),
        case(Method::POST, "/insert").json(r#"{"event":"user""#),
        case(Method::POST, "/insert").json(r#"{"data":1}"#),
        case(Method::POST, "/insert").header("content-type", "text/plain").header("x", "y"),
        case(Method::POST, "/insert").json(
            r#"{"event":"big","data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
        ),
        case(Method::GET, "/insert"),
        case(Method::GET, "/events"),
        case(Method::GET, "/events?event="),
        case(Method::DELETE, "/events"),
        case(Method::GET, "/audit/user"),
        case(Method::GET, "/audit/user?limit=1"),
        case(Method::GET, "/audit/nobody"),
        case(Method::GET, "/audit/user?limit=0"),
        case(Method::PUT, "/audit/user"),
        case(Method::GET, "/snapshot"),
        case(Method::GET, "/snapshot?event=user&at=1"),
        case(Method::GET, "/snapshot?at=2026-11-30T10:03:00Z"),
        case(Method::GET, "/snapshot?at=yesterday"),
        case(Method::DELETE, "/snapshot"),
        case(Method::GET, "/healthz"),
        case(Method::GET, "/readyz"),
        case(Method::GET, "/metrics"),
        case(Method::GET, "/backup"),
        case(Method::POST, "/backup"),
    ];
    for case in cases {
        seen.insert(check(&spec, &open, case).await);
    }

    let secured = Server::start_with(&[], &[("BROKER_JWT_SECRET", SECRET)]).await;
    let reader = token(json!({ "events": ["public"], "insert": ["public"] }));
    let bearer = format!("Bearer {reader}");
    let cases = [
        case(Method::POST, "/insert").json(r#"{"event":"public","data":1}"#),
        case(Method::POST, "/insert")
            .json(r#"{"event":"secret","data":1}"#)
            .header("authorization", bearer.clone()),
        case(Method::POST, "/insert")
            .json(r#"[{"event":"public","data":1},{"event":"secret","data":1}]"#)
            .header("authorization", bearer.clone()),
        case(Method::GET, "/events"),
        case(Method::GET, "/events?event=secret").header("authorization", bearer.clone()),
        case(Method::GET, "/audit/secret"),
        case(Method::GET, "/audit/secret").header("authorization", bearer.clone()),
        case(Method::GET, "/snapshot"),
        case(Method::GET, "/snapshot?event=secret").header("authorization", bearer.clone()),
        case(Method::GET, "/metrics"),
        case(Method::GET, "/healthz"),
        case(Method::GET, "/backup"),
        case(Method::GET, "/backup").header("authorization", bearer.clone()),
    ];
    for case in cases {
        seen.insert(check(&spec, &secured, case).await);
    }

    // Retention: the state before what was pruned is gone, and the audit says how far.
    let pruned =
        Server::start_with(&["--idempotency-window", "100ms", "--retain", "a=1"], &[]).await;
    let first = pruned.insert("a", json!(1)).await;
    pruned.insert("a", json!(2)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while pruned.audit("a").await.len() > 1 {
        assert!(std::time::Instant::now() < deadline, "a was not pruned");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let at = format!("/snapshot?at={}", first.id);
    for case in [case(Method::GET, &at), case(Method::GET, "/audit/a")] {
        seen.insert(check(&spec, &pruned, case).await);
    }

    // A full house of event streams.
    let full = Server::start_with(&["--max-subscribers", "1"], &[]).await;
    let held = crate::support::Sse::snapshot(&full).await;
    seen.insert(check(&spec, &full, case(Method::GET, "/events")).await);
    drop(held);

    // Draining after SIGTERM: not ready, still serving.
    let mut draining = Server::start_with(&["--drain-delay", "3s"], &[]).await;
    draining.signal("TERM");
    let not_ready = async {
        loop {
            let status = reqwest::get(draining.url("/readyz")).await.expect("GET /readyz").status();
            if status == 503 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), not_ready).await.expect("draining");
    for case in [case(Method::GET, "/readyz"), case(Method::GET, "/healthz")] {
        seen.insert(check(&spec, &draining, case).await);
    }
    let exit = draining.wait_for_exit("TERM").await;
    assert!(exit.status.success(), "the drained server exits cleanly");
    assert!(exit.elapsed >= std::time::Duration::from_secs(1), "it served on while draining");

    let mut documented = BTreeSet::new();
    for (path, operations) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            for status in operation["responses"].as_object().expect("responses").keys() {
                documented.insert((path.clone(), method.clone(), status.clone()));
            }
        }
    }
    let exempt: BTreeSet<(String, String, String)> = NOT_PROVOKED
        .iter()
        .map(|(path, method, status)| (path.to_string(), method.to_string(), status.to_string()))
        .collect();
    let missing: Vec<_> = documented.difference(&seen).filter(|d| !exempt.contains(*d)).collect();
    assert!(missing.is_empty(), "documented but never answered: {missing:?}");
}
