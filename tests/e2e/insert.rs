//! `POST /insert`: the 201 reply, ids, and data that comes back exactly as it went in.

use serde_json::json;

use crate::support::{Server, Sse, now_ms};

#[tokio::test]
async fn insert_answers_201_with_id_event_timestamp_and_data() {
    let server = Server::start().await;
    let before = now_ms();
    let version = server.insert("user", json!({"name": "Rusty"})).await;
    let after = now_ms();

    assert_eq!(version.id, 1, "ids start at 1");
    assert_eq!(version.event, "user");
    assert_eq!(version.data.get(), r#"{"name":"Rusty"}"#);
    assert!(
        (before..=after).contains(&version.timestamp),
        "timestamp {} is not between {before} and {after}: milliseconds since the epoch",
        version.timestamp
    );
}

#[tokio::test]
async fn ids_strictly_increase_across_events() {
    let server = Server::start().await;
    let mut last = 0;
    for event in ["a", "b", "a", "c", "b", "a"] {
        let version = server.insert(event, json!(event)).await;
        assert!(version.id > last, "id {} after {last}", version.id);
        last = version.id;
    }
    assert_eq!(server.health().await.last_id, last);
}

/// Data as inserted (JSON text) and as every route must give it back.
const DATA: &[(&str, &str)] = &[
    (r#"{"name":"Rusty"}"#, r#"{"name":"Rusty"}"#),
    ("{ \"a\" : [ 1 , 2 , { \"b\" : null } ] }", r#"{"a":[1,2,{"b":null}]}"#),
    (
        "{\n\t\"pretty\": {\r\n    \"x\": [\n      true,\n      false\n    ]\n  }\n}\n",
        r#"{"pretty":{"x":[true,false]}}"#,
    ),
    (r#"{"b":1,"a":2,"c":{"z":0,"y":1}}"#, r#"{"b":1,"a":2,"c":{"z":0,"y":1}}"#),
    (r#"{"deep":{"deeper":{"deepest":[[[{}]]]}}}"#, r#"{"deep":{"deeper":{"deepest":[[[{}]]]}}}"#),
    (r#""naïve café 🦀 日本語""#, r#""naïve café 🦀 日本語""#),
    (r#""  spaced  out  \t ""#, r#""  spaced  out  \t ""#),
    (
        r#""line\nbreak \"quoted\" back\\slash \u00e9 \ud83e\udd80""#,
        r#""line\nbreak \"quoted\" back\\slash \u00e9 \ud83e\udd80""#,
    ),
    ("\"separator \u{2028} paragraph \u{2029}\"", "\"separator \u{2028} paragraph \u{2029}\""),
    ("123456789012345678901234567890", "123456789012345678901234567890"),
    ("-18446744073709551617", "-18446744073709551617"),
    ("3.14159265358979323846264338327950288", "3.14159265358979323846264338327950288"),
    ("1.5E+300", "1.5E+300"),
    ("-0", "-0"),
    ("[ ]", "[]"),
    ("{ }", "{}"),
    ("null", "null"),
    ("true", "true"),
    ("0", "0"),
];

#[tokio::test]
async fn data_comes_back_exactly_from_insert_audit_and_events() {
    let server = Server::start().await;
    let mut expected = Vec::new();
    for (i, (input, compact)) in DATA.iter().enumerate() {
        let event = format!("case-{i}");
        let version = server.insert_raw(&event, input).await;
        assert_eq!(version.data.get(), *compact, "/insert reply for {input:?}");
        expected.push((event, version.id, compact.to_string()));
    }
    for (event, id, compact) in &expected {
        let audit = server.audit(event).await;
        let audited: Vec<_> = audit.iter().map(|version| version.key()).collect();
        assert_eq!(audited, [(event.clone(), *id, compact.clone())], "/audit of {event}");
    }
    let mut sse = Sse::snapshot(&server).await;
    let events = sse.events(expected.len()).await;
    let streamed: Vec<_> = events.iter().map(|event| event.key()).collect();
    assert_eq!(streamed, expected, "the /events snapshot");
}

#[tokio::test]
async fn json_content_type_with_parameters_or_other_case_is_accepted() {
    let server = Server::start().await;
    let cases = [
        ("application/json", None),
        ("application/json; charset=utf-8", None),
        ("application/JSON;charset=\"UTF-8\"", None),
        ("application/json", Some("identity")),
    ];
    for (content_type, coding) in cases {
        let body = br#"{"event":"typed","data":1}"#.to_vec();
        let mut headers = vec![("content-type", content_type)];
        headers.extend(coding.map(|coding| ("content-encoding", coding)));
        let reply = server.request("POST", "/insert", &headers, Some(body)).await;
        assert_eq!(reply.status, 201, "Content-Type: {content_type} {coding:?}: {reply}");
    }
    assert_eq!(server.audit("typed").await.len(), cases.len());
}

#[tokio::test]
async fn event_names_are_any_text_up_to_the_byte_limit() {
    let server = Server::start_with(&["--max-event-name", "16"], &[]).await;
    let names = [
        "x",
        "sixteen-bytes-xx",
        "éééééééé",
        "🦀🦀🦀🦀",
        "with space",
        " leading",
        "a:b/c?d#e%f",
        "User",
        "user",
    ];
    for name in names {
        let version = server.insert(name, json!(name)).await;
        assert_eq!(version.event, name);
    }
    for name in names {
        let audit = server.audit(name).await;
        let events: Vec<_> = audit.iter().map(|version| version.event.as_str()).collect();
        assert_eq!(events, [name], "names are compared byte for byte");
    }
}
