//! `GET /audit/{event}` with authorization on: the `audit` scope decides, and a refusal says
//! nothing about whether the event exists.

use serde_json::json;

use super::{Answer, admin_insert, claims, get, sign, start};

#[tokio::test]
async fn audit_scope_allows_matching_events_only() {
    let server = start(&[]).await;
    let first = admin_insert(&server, "orders.a", json!(1)).await;
    let second = admin_insert(&server, "orders.a", json!(2)).await;
    admin_insert(&server, "secret", json!(3)).await;
    let token = sign(&claims(&[], &[], &["orders.*"]));
    let answer = get(&server, "/audit/orders.a", Some(&token)).await;
    answer.expect_status(200);
    let ids: Vec<_> =
        answer.json().as_array().expect("a list").iter().map(|v| v["id"].clone()).collect();
    assert_eq!(ids, [json!(first), json!(second)]);
    let never_inserted = get(&server, "/audit/orders.none", Some(&token)).await;
    never_inserted.expect_status(200);
    assert_eq!(never_inserted.json(), json!([]));
    // Scopes are separate: receiving or inserting an event does not allow reading its history.
    let no_audit = sign(&claims(&["*"], &["*"], &[]));
    get(&server, "/audit/orders.a", Some(&no_audit)).await.expect_insufficient_scope();
}

/// The parts of a refusal a client can see, with the event's name replaced by `{event}`; the
/// `Date` header is left out.
fn shape(answer: &Answer, event: &str) -> (u16, Vec<(String, String)>, String) {
    let mut headers: Vec<_> = answer
        .headers
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| {
            let value = value.to_str().expect("a header value is text");
            (name.to_string(), value.replace(event, "{event}"))
        })
        .collect();
    headers.sort();
    (answer.status, headers, answer.body.replace(event, "{event}"))
}

#[tokio::test]
async fn audit_refusal_is_the_same_for_existing_and_missing_events() {
    let server = start(&[]).await;
    admin_insert(&server, "secret", json!({"password": "hunter2"})).await;
    let token = sign(&claims(&[], &["*"], &["orders.*"]));
    // Two names of the same length, so that even Content-Length cannot tell them apart.
    let existing = get(&server, "/audit/secret", Some(&token)).await;
    let missing = get(&server, "/audit/absent", Some(&token)).await;
    existing.expect_insufficient_scope();
    missing.expect_insufficient_scope();
    assert!(!existing.body.contains("hunter2"), "{existing:?}");
    assert_eq!(shape(&existing, "secret"), shape(&missing, "absent"));
    // Paging parameters change nothing either.
    let paged = get(&server, "/audit/secret?after=0&limit=1", Some(&token)).await;
    assert_eq!(shape(&paged, "secret"), shape(&existing, "secret"));
}
