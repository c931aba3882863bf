//! Two broker nodes behind nginx configured with the block SCALING.md documents: a client that
//! knows only nginx subscribes, inserts and receives, and when the node under its stream is
//! killed, reconnects through nginx and resumes exactly on the other.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use super::{Deployment, EVENT_TIMEOUT};
use crate::support::{Feed, INSERT_BOUND, Nginx, Version, ids};

/// `POST /insert` through nginx at `proxy` under the key `{event}-{n}`: the status, the
/// `Retry-After` header and the body.
async fn post(
    client: &reqwest::Client,
    proxy: SocketAddr,
    event: &str,
    n: u64,
) -> (u16, Option<String>, String) {
    let body = json!({ "event": event, "data": n });
    let response = client
        .post(format!("http://{proxy}/insert"))
        .header("idempotency-key", format!("{event}-{n}"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("insert {body} through nginx: {error}"));
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("a header value is text").to_owned());
    (status, retry_after, response.text().await.expect("read the reply"))
}

/// `POST /insert` through nginx; checks the 201 and returns the version.
async fn insert(client: &reqwest::Client, proxy: SocketAddr, event: &str, n: u64) -> Version {
    let (status, _, body) = post(client, proxy, event, n).await;
    assert_eq!(status, 201, "insert {event} {n} through nginx: {body}");
    serde_json::from_str(&body).expect("a version")
}

/// A client of nginx at `proxy`, with the bound on each answer.
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(INSERT_BOUND).build().expect("an HTTP client")
}

/// Through nginx, a client subscribes, inserts and receives; when the node under its stream is
/// killed, it reconnects through nginx and resumes on the other node with no gap and no
/// duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_as_documented_moves_a_subscriber_to_the_surviving_node() {
    let Deployment { cluster: _cluster, a, b, .. } = Deployment::start("behind_nginx").await;
    let mut nodes = [a, b];
    let nginx = Nginx::start([nodes[0].addr(), nodes[1].addr()]);
    let proxy = nginx.addr();
    let client = client();

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

/// While the NATS quorum is lost every node answers 503, and a client of nginx must still get
/// the broker's answer, with its error code and `Retry-After`, for inserts as for `/readyz`: a
/// 503 that nginx counted as a failed node would leave no node to send anything to, and every
/// request would get nginx's own 502 page instead. Once the quorum is back, inserts through
/// nginx succeed again by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_as_documented_passes_the_brokers_503_while_the_quorum_is_lost() {
    let Deployment { mut cluster, a, b, .. } = Deployment::start("nginx_quorum").await;
    let nginx = Nginx::start([a.addr(), b.addr()]);
    let (client, proxy) = (client(), nginx.addr());
    insert(&client, proxy, "q", 0).await;

    cluster.stop(1).await;
    cluster.stop(2).await;
    // A node learns that its storage fails from a write that fails: one on each.
    for (key, node) in [("direct-a", &a), ("direct-b", &b)] {
        let (reply, _) = node.insert_once("q", &json!(key), key).await;
        assert_eq!(reply.status, 503, "{reply}");
    }
    for n in 1..5 {
        let readyz = client.get(format!("http://{proxy}/readyz")).send().await.expect("/readyz");
        let (status, body) = (readyz.status().as_u16(), readyz.text().await.expect("a body"));
        assert!(
            status == 503 && body.contains("storage_failing"),
            "/readyz {n} through nginx answered {status} {body}; nginx log:\n{}",
            nginx.log()
        );
        let (status, retry_after, body) = post(&client, proxy, "q", n).await;
        let json = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default();
        let code = json["error"].as_str().unwrap_or_default();
        assert!(
            status == 503
                && (code == "storage_unavailable" || code == "unknown_outcome")
                && retry_after.is_some(),
            "insert {n} through nginx answered {status} {retry_after:?} {body}; nginx log:\n{}",
            nginx.log()
        );
    }

    cluster.restart(1).await;
    let started = std::time::Instant::now();
    loop {
        let (status, _, body) = post(&client, proxy, "q", 5).await;
        if status == 201 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still {status} {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
