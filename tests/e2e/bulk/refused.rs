//! Arrays refused whole: a bad element, named by its index; an empty array; more versions than
//! the limit; an element the token may not insert; a disk with no room for the whole array. None
//! of them stores anything.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{array, ids, insert_array, numbered, stored};
use crate::auth::{admin, admin_audit, bearer, claims, sign};
use crate::support::{Server, Sse, Tmpfs, fill};

/// Three good versions around `bad`, the element at index 2, as body text.
fn around(bad: &str) -> String {
    let good = |n: u32| json!({"event": "ok", "data": n}).to_string();
    format!("[{},{},{bad},{}]", good(0), good(1), good(3))
}

/// What the answer to an array must be: status, error code and part of the message.
struct Refusal {
    body: String,
    status: u16,
    code: &'static str,
    mentions: &'static str,
}

fn refusal(body: String, status: u16, code: &'static str, mentions: &'static str) -> Refusal {
    Refusal { body, status, code, mentions }
}

/// Checks that `server` answers each case as expected and stores nothing; returns the problems.
async fn check(server: &Server, cases: &[Refusal]) {
    let mut sse = Sse::snapshot(server).await;
    let mut problems = Vec::new();
    for case in cases {
        let reply = server.post_insert(&case.body).await;
        let json: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        let message = json["message"].as_str().unwrap_or_default();
        if (reply.status, json["error"].as_str()) != (case.status, Some(case.code))
            || !message.contains(case.mentions)
        {
            problems.push(format!(
                "{}: expected {} {} naming {:?}, got {} {}",
                case.body, case.status, case.code, case.mentions, reply.status, reply.body
            ));
        }
    }
    assert!(problems.is_empty(), "{} cases failed:\n{}", problems.len(), problems.join("\n"));
    assert_eq!(server.health().await.last_id, 0, "a refused array stores nothing");
    assert!(server.audit("ok").await.is_empty(), "not even the good elements");
    sse.expect_no_event(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_bad_element_refuses_the_whole_array_naming_its_index() {
    let server = Server::start_with(&["--max-event-name", "16"], &[]).await;
    let long = "x".repeat(17);
    let cases = [
        refusal(around(r#"{"data":1}"#), 400, "invalid_field", "[2]: missing field `event`"),
        refusal(around(r#"{"event":"ok"}"#), 400, "invalid_field", "[2]: missing field `data`"),
        refusal(around(r#"{"event":"ok","data":1,"extra":0}"#), 400, "invalid_field", "[2].extra"),
        refusal(around(r#"{"event":5,"data":1}"#), 400, "invalid_field", "[2].event"),
        refusal(around(r#"["ok",1]"#), 400, "invalid_field", "[2]"),
        refusal(around("7"), 400, "invalid_field", "[2]"),
        refusal(around(r#"{"event":"","data":1}"#), 400, "invalid_event_name", "[2].event"),
        refusal(around(r#"{"event":"a\nid: 9","data":1}"#), 400, "invalid_event_name", "[2].event"),
        refusal(
            around(&format!(r#"{{"event":"{long}","data":1}}"#)),
            400,
            "invalid_event_name",
            "[2].event",
        ),
        refusal(around(r#"{"event":"ok","data":"\ud800"}"#), 400, "malformed_json", "[2].data"),
        refusal(around(r#"{"event":"ok","data":nul}"#), 400, "malformed_json", "[2]"),
        refusal(
            format!("{} trailing", around(r#"{"event":"ok","data":2}"#)),
            400,
            "malformed_json",
            "trailing",
        ),
    ];
    check(&server, &cases).await;
}

#[tokio::test]
async fn an_empty_array_and_too_many_versions_are_refused() {
    let server = Server::start_with(&["--max-bulk", "5", "--max-body", "4096"], &[]).await;
    let cases = [
        refusal("[]".into(), 400, "empty_array", "empty"),
        refusal(" [ ] ".into(), 400, "empty_array", "empty"),
        refusal(array(&numbered("ok", 6)), 413, "too_many_versions", "more than 5 versions"),
        // The body's own limit holds for arrays too.
        refusal(array(&numbered("ok", 200)), 413, "payload_too_large", "4096 bytes"),
    ];
    check(&server, &cases).await;
    let five = insert_array(&server, &numbered("ok", 5)).await;
    assert_eq!(ids(&five), [1, 2, 3, 4, 5], "an array at the limit is stored");
}

#[tokio::test]
async fn the_limit_never_exceeds_what_one_commit_holds() {
    // redb commits at most 4096 versions at once: a larger limit is capped to it.
    let server = Server::start_with(&["--max-bulk", "5000"], &[]).await;
    let cases = [refusal(
        array(&numbered("ok", 4097)),
        413,
        "too_many_versions",
        "more than 4096 versions",
    )];
    check(&server, &cases).await;
    let all = insert_array(&server, &numbered("ok", 4096)).await;
    assert_eq!(ids(&all), (1..=4096).collect::<Vec<_>>(), "4096 versions in one commit");
}

#[tokio::test]
async fn an_element_the_token_may_not_insert_refuses_the_whole_array() {
    let server = crate::auth::start(&[]).await;
    let token = bearer(&sign(&claims(&["orders.*"], &["*"], &["*"])));
    let send = |body: String, authorization: Option<String>| {
        let server = &server;
        async move {
            let mut headers = vec![("content-type", "application/json".to_owned())];
            headers.extend(authorization.map(|value| ("authorization", value)));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
            server.request("POST", "/insert", &headers, Some(body.into_bytes())).await
        }
    };
    let forbidden = [
        ("orders.a", json!(1)),
        ("orders.b", json!(2)),
        ("secret", json!(3)),
        ("orders.c", json!(4)),
    ];
    let reply = send(array(&forbidden), Some(token.clone())).await;
    let message = reply.expect_error(403, "insufficient_scope");
    assert!(message.starts_with("[2]: ") && message.contains("\"secret\""), "{message}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"insufficient_scope\""), "{reply}");
    // The same refusal as for the element alone, whether or not the event was ever inserted.
    let alone = send(json!({"event": "secret", "data": 3}).to_string(), Some(token.clone())).await;
    let alone = alone.expect_error(403, "insufficient_scope");
    assert_eq!(message, format!("[2]: {alone}"), "nothing more than a single insert says");
    send(array(&forbidden), None).await.expect_error(401, "missing_token");
    assert_eq!(server.health().await.last_id, 0, "nothing was stored");
    assert!(admin_audit(&server, "orders.a").await.is_empty(), "not even the allowed elements");

    let allowed = &forbidden[..2];
    let reply = send(array(allowed), Some(token)).await;
    assert_eq!(ids(&stored(&reply, allowed)), [1, 2]);
    let everything = send(array(&forbidden), Some(bearer(&admin()))).await;
    assert_eq!(ids(&stored(&everything, &forbidden)), [3, 4, 5, 6]);
}

/// On a disk that fills up, the array that does not fit is refused whole: none of its versions
/// is stored, not those that would have fit, and the broker takes it whole once space is freed.
#[tokio::test]
async fn an_array_the_disk_has_no_room_for_is_refused_whole() {
    let disk = Tmpfs::mount("20m");
    let filler = disk.path("filler");
    fill(&filler, 4 * 1024 * 1024);
    let data = disk.path("broker.redb");
    let data = data.to_str().expect("a UTF-8 path");
    let server = Server::start_with(&["--data", data, "--min-free-space", "0"], &[]).await;
    let mut sse = Sse::snapshot(&server).await;

    // Arrays of 16 versions of 8 KiB each until the disk is full.
    let pad = "x".repeat(8 * 1024);
    let mut acknowledged: Vec<u64> = Vec::new();
    let (refused, asked) = loop {
        let round = acknowledged.len() / 16;
        let asked: Vec<(&str, Value)> =
            (0..16).map(|n| ("doc", json!({"round": round, "n": n, "pad": pad}))).collect();
        let reply = server.post_insert(&array(&asked)).await;
        if reply.status != 201 {
            break (reply, asked);
        }
        acknowledged.extend(ids(&stored(&reply, &asked)));
        assert!(acknowledged.len() < 5000, "20 MiB never filled up");
    };
    refused.expect_error(507, "storage_full");
    assert!(acknowledged.len() >= 16 * 8, "only {} versions fit", acknowledged.len());
    let last = *acknowledged.last().expect("some arrays fit");
    assert_eq!(server.health().await.last_id, last, "nothing of the refused array was stored");
    let stored_ids: Vec<u64> = server.audit("doc").await.iter().map(|v| v.id).collect();
    assert_eq!(stored_ids, acknowledged, "every acknowledged version, and only those");
    let streamed: Vec<u64> = sse.events(acknowledged.len()).await.iter().map(|e| e.id).collect();
    assert_eq!(streamed, acknowledged);
    sse.expect_no_event(Duration::from_millis(200)).await;

    // Once space is freed, the same array is stored, whole.
    std::fs::remove_file(&filler).expect("free the filler's space");
    let freed = Instant::now();
    let retried = loop {
        let reply = server.post_insert(&array(&asked)).await;
        if reply.status == 201 {
            break reply;
        }
        assert!(freed.elapsed() < Duration::from_secs(10), "still refused: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let retried = ids(&stored(&retried, &asked));
    assert!(retried[0] > last && retried.windows(2).all(|w| w[0] + 1 == w[1]), "{retried:?}");
    let streamed: Vec<u64> = sse.events(16).await.iter().map(|e| e.id).collect();
    assert_eq!(streamed, retried, "subscribers receive the whole array, once");
}
