//! `POST /insert` of an array: the versions are stored together in one commit or not at all,
//! answered as an array in order, delivered to subscribers as one run of ids, and retried as a
//! whole with one `Idempotency-Key`.

mod refused;
mod retry;

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};

use crate::support::{Event, Reply, Server, Sse, Version, now_ms};

/// The body of an insert of `versions`, each an `(event, data)` pair, as an array.
pub fn array(versions: &[(&str, Value)]) -> String {
    let elements: Vec<Value> =
        versions.iter().map(|(event, data)| json!({"event": event, "data": data})).collect();
    Value::from(elements).to_string()
}

/// `len` versions of `event` whose data say which of the array they are.
pub fn numbered(event: &str, len: usize) -> Vec<(&str, Value)> {
    (0..len).map(|n| (event, json!({"n": n}))).collect()
}

/// Checks that `reply` is the 201 of an array of `asked`, in order, and returns the versions.
pub fn stored(reply: &Reply, asked: &[(&str, Value)]) -> Vec<Version> {
    assert_eq!(reply.status, 201, "an array is answered 201: {reply}");
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "content type of {reply}");
    let versions: Vec<Version> = serde_json::from_str(&reply.body).unwrap_or_else(|error| {
        panic!("the answer is not an array of versions ({error}): {reply}")
    });
    let answered: Vec<(&str, Value)> =
        versions.iter().map(|v| (v.event.as_str(), v.data())).collect();
    assert_eq!(answered, asked, "the versions are answered in the order given");
    versions
}

/// Posts `asked` as an array, checks the 201 and returns the stored versions.
pub async fn insert_array(server: &Server, asked: &[(&str, Value)]) -> Vec<Version> {
    stored(&server.post_insert(&array(asked)).await, asked)
}

/// The ids of `versions`.
pub fn ids(versions: &[Version]) -> Vec<u64> {
    versions.iter().map(|version| version.id).collect()
}

#[tokio::test]
async fn an_array_is_stored_in_order_with_consecutive_ids_and_answered_as_an_array() {
    let server = Server::start().await;
    let mut sse = Sse::snapshot(&server).await;
    let first = server.insert("user", json!({"name": "Rusty"})).await;
    let asked = [
        ("user", json!({"name": "Ferris"})),
        ("order", json!({"id": 1, "state": "paid"})),
        ("user", json!({"name": "Corro"})),
        ("order", json!([1, "two", null, 3.5])),
        ("naïve café 🦀", json!("text")),
    ];
    let before = now_ms();
    let versions = insert_array(&server, &asked).await;
    let after = now_ms();

    let expected_ids: Vec<u64> = (first.id + 1..=first.id + 5).collect();
    assert_eq!(ids(&versions), expected_ids, "consecutive ids after every earlier version");
    let timestamp = versions[0].timestamp;
    assert!((before..=after).contains(&timestamp), "{timestamp} not in {before}..={after}");
    assert!(versions.iter().all(|v| v.timestamp == timestamp), "one commit, one timestamp");
    assert_eq!(server.health().await.last_id, first.id + 5);

    // Stored: each event's history holds its versions, in order.
    let users: Vec<u64> = server.audit("user").await.iter().map(|v| v.id).collect();
    assert_eq!(users, [first.id, first.id + 1, first.id + 3]);
    assert_eq!(server.audit("order").await, [versions[1].clone(), versions[3].clone()]);
    // Published: the open stream receives them once each, in order, and a new subscriber finds
    // the latest of each event in its snapshot.
    let live: Vec<(String, u64)> =
        sse.events(6).await.iter().map(|event| (event.event.clone(), event.id)).collect();
    let mut expected: Vec<(String, u64)> = vec![("user".into(), first.id)];
    expected.extend(versions.iter().map(|v| (v.event.clone(), v.id)));
    assert_eq!(live, expected);
    let mut snapshot = Sse::snapshot(&server).await;
    let latest: Vec<u64> = snapshot.events(3).await.iter().map(|event| event.id).collect();
    assert_eq!(latest, [first.id + 3, first.id + 4, first.id + 5], "user, order, then the last");

    // An array of one is an array too, and answered as one.
    let one = insert_array(&server, &[("order", json!("last"))]).await;
    assert_eq!(ids(&one), [first.id + 6]);
}

/// Several clients send arrays at once while several subscribers follow `/events`: every
/// subscriber receives every version once, in id order, with each array's versions one after
/// the other.
#[tokio::test]
async fn concurrent_arrays_reach_every_subscriber_once_in_order_and_each_in_one_piece() {
    const CLIENTS: usize = 6;
    const ARRAYS: usize = 8;
    let server = Server::start().await;
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        subscribers.push(Sse::snapshot(&server).await);
    }
    let clients = (0..CLIENTS).map(|client| {
        let server = &server;
        async move {
            let mut answered = Vec::new();
            for round in 0..ARRAYS {
                // Arrays of several sizes, and single inserts among them.
                let event = format!("client-{client}");
                let len = [1, 7, 30, 2][(client + round) % 4];
                let asked: Vec<(&str, Value)> =
                    (0..len).map(|n| (event.as_str(), json!({"round": round, "n": n}))).collect();
                answered.push(insert_array(server, &asked).await);
                if round % 3 == 0 {
                    answered.push(vec![server.insert(&event, json!({"single": round})).await]);
                }
            }
            answered
        }
    });
    let answered: Vec<Vec<Version>> =
        futures_util::future::join_all(clients).await.into_iter().flatten().collect();
    let total: usize = answered.iter().map(Vec::len).sum();
    let all: BTreeSet<u64> = answered.iter().flatten().map(|version| version.id).collect();
    assert_eq!(all.len(), total, "every version has an id of its own");

    for (index, sse) in subscribers.iter_mut().enumerate() {
        let received: Vec<Event> = sse.events(total).await;
        let ids: Vec<u64> = received.iter().map(|event| event.id).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "subscriber {index}: id order");
        assert_eq!(ids.iter().copied().collect::<BTreeSet<u64>>(), all, "subscriber {index}");
        let position: HashMap<u64, usize> =
            ids.iter().enumerate().map(|(position, id)| (*id, position)).collect();
        for versions in &answered {
            let at: Vec<usize> = versions.iter().map(|version| position[&version.id]).collect();
            let together = at.windows(2).all(|pair| pair[0] + 1 == pair[1]);
            assert!(together, "subscriber {index}: an array arrived split, at positions {at:?}");
            for version in versions {
                let event = &received[position[&version.id]];
                assert_eq!((&event.event, event.json()), (&version.event, version.data()));
            }
        }
        sse.expect_no_event(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(server.health().await.last_id, *all.last().expect("versions"));
}
