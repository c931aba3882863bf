//! One `Idempotency-Key` for a whole array: a retry returns the versions stored the first time
//! and stores nothing, across a restart too; a changed element is `422` and stores nothing.

use std::time::Duration;

use serde_json::{Value, json};

use super::{array, ids, numbered, stored};
use crate::support::{Reply, Server, Sse, Version};

async fn keyed(server: &Server, key: &str, versions: &[(&str, Value)]) -> Reply {
    let headers = [("content-type", "application/json"), ("idempotency-key", key)];
    server.request("POST", "/insert", &headers, Some(array(versions).into_bytes())).await
}

#[tokio::test]
async fn a_retry_of_an_array_returns_the_same_versions_and_a_changed_element_is_refused() {
    let mut server = Server::start().await;
    let mut sse = Sse::snapshot(&server).await;
    let asked = [("order", json!({"id": 1})), ("payment", json!(5)), ("order", json!({"id": 2}))];
    let first = stored(&keyed(&server, "batch-7", &asked).await, &asked);
    assert_eq!(ids(&first), [1, 2, 3]);
    let streamed: Vec<u64> = sse.events(3).await.iter().map(|event| event.id).collect();
    assert_eq!(streamed, [1, 2, 3]);

    // The client lost the answer and sends the same request again.
    let retry = stored(&keyed(&server, "batch-7", &asked).await, &asked);
    assert_eq!(retry, first, "the retry answers the versions stored then, timestamps included");
    assert_eq!(server.health().await.last_id, 3, "and stores nothing");

    // The same key with an element changed, whichever: refused, naming the version stored
    // under that element's key, and nothing is stored.
    for (index, changed) in [(0, ("order", json!({"id": 9}))), (2, ("other", json!({"id": 2})))] {
        let mut other = asked.to_vec();
        other[index] = changed;
        let message =
            keyed(&server, "batch-7", &other).await.expect_error(422, "idempotency_key_reused");
        let id = first[index].id;
        assert!(message.contains(&format!("version {id}")), "names version {id}: {message}");
    }
    assert_eq!(server.health().await.last_id, 3, "a refused retry stores nothing");
    sse.expect_no_event(Duration::from_millis(200)).await;

    // Keys outlive a restart.
    drop(sse);
    server.restart().await;
    let after_restart = stored(&keyed(&server, "batch-7", &asked).await, &asked);
    assert_eq!(after_restart, first, "the array's key is remembered across a restart");

    // The key names an array of three versions: an array of another length, or a single
    // insert, under the same key is another request, stored as new, as PROTOCOL.md says.
    let two = stored(&keyed(&server, "batch-7", &asked[..2]).await, &asked[..2]);
    assert_eq!(ids(&two), [4, 5]);
    let headers = [("content-type", "application/json"), ("idempotency-key", "batch-7")];
    let body = json!({"event": "order", "data": {"id": 1}}).to_string().into_bytes();
    let single = server.request("POST", "/insert", &headers, Some(body)).await;
    assert_eq!((single.status, single.json()["id"].as_u64()), (201, Some(6)), "{single}");
}

#[tokio::test]
async fn concurrent_retries_of_an_array_store_it_once() {
    let server = Server::start().await;
    let asked = numbered("tick", 20);
    let tries = (0..8).map(|_| keyed(&server, "ticks-1", &asked));
    let replies = futures_util::future::join_all(tries).await;
    let answers: Vec<Vec<Version>> = replies.iter().map(|reply| stored(reply, &asked)).collect();
    assert!(answers.iter().all(|answer| *answer == answers[0]), "every try answers the same");
    assert_eq!(ids(&answers[0]), (1..=20).collect::<Vec<_>>());
    assert_eq!(server.audit("tick").await.len(), 20, "stored once");
}
