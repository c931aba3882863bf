//! Two broker nodes behind nginx configured with the block SCALING.md documents: a client that
//! knows only nginx subscribes, inserts and receives, and when the node under its stream is
//! killed, reconnects through nginx and resumes exactly on the other.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use super::{Deployment, EVENT_TIMEOUT};
use crate::support::{Feed, INSERT_BOUND, Nginx, Version, ids};

/// `POST /insert` through nginx at `proxy`; checks the 201 and returns the version.
async fn insert(client: &reqwest::Client, proxy: SocketAddr, event: &str, n: u64) -> Version {
    let body = json!({ "event": event, "data": n });
    let key = format!("{event}-{n}");
    let response = client
        .post(format!("http://{proxy}/insert"))
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("insert {body} through nginx: {error}"));
    let status = response.status();
    let text = response.text().await.expect("read the reply");
    assert_eq!(status, 201, "insert {body} through nginx: {text}");
    serde_json::from_str(&text).expect("a version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_as_documented_moves_a_subscriber_to_the_surviving_node() {
    let Deployment { cluster: _cluster, a, b, .. } = Deployment::start("behind_nginx").await;
    let mut nodes = [a, b];
    let nginx = Nginx::start([nodes[0].addr(), nodes[1].addr()]);
    let proxy = nginx.addr();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(INSERT_BOUND)
        .build()
        .expect("build an HTTP client");

    let mut feed = Feed::open(proxy, None).await;
    assert_eq!(feed.start, "snapshot");
    let mut inserted = Vec::new();
    for n in 0..3 {
        inserted.push(insert(&client, proxy, "proxied", n).await);
    }
    let mut received = feed.events(3, EVENT_TIMEOUT).await;
    assert_eq!(ids(&received), ids(&inserted), "through nginx");

    // The node whose /healthz counts the one subscriber carries the stream.
    let mut carrier = None;
    for (i, node) in nodes.iter().enumerate() {
        if node.health().await.subscribers == 1 {
            carrier = Some(i);
        }
    }
    let carrier = carrier.expect("one node carries the stream");
    nodes[carrier].signal("KILL");
    nodes[carrier].wait_for_exit("KILL").await;
    let rest = feed.until_end(Duration::from_secs(10)).await;
    assert!(rest.is_empty(), "nothing more before the stream broke: {rest:?}");

    for n in 3..5 {
        inserted.push(insert(&client, proxy, "proxied", n).await);
    }
    let last = received.last().expect("events were received").last_event_id();
    let mut feed = Feed::open(proxy, Some(&last)).await;
    assert_eq!(feed.start, "resumed", "{:?}; nginx log:\n{}", feed.head, nginx.log());
    for n in 5..7 {
        inserted.push(insert(&client, proxy, "proxied", n).await);
    }
    received.extend(feed.events(4, EVENT_TIMEOUT).await);
    assert_eq!(ids(&received), ids(&inserted), "resumed through nginx, no gap, no duplicate");
    feed.expect_quiet(Duration::from_millis(300)).await;
    let survivor = &nodes[1 - carrier];
    assert_eq!(survivor.health().await.subscribers, 1, "on the surviving node");
}
