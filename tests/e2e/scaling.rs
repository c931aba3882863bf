//! Two broker nodes over one NATS JetStream stream on a real three-node cluster, checked against
//! what `docs/SCALING.md` promises: one database and one order on every node, resume and
//! read-your-writes across nodes, retries that store once whichever node they reach, and, in
//! `faults`, what clients see when a NATS server, the NATS quorum or a broker node is lost; in
//! `proxy`, a client that knows only nginx, configured as documented, moved to a live node.

mod faults;
mod proxy;

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::support::{Event, Feed, NatsCluster, Server, ids};

/// How long an event a test expects may take to reach a subscriber on either node.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A NATS cluster and two broker nodes, A and B, on one stream of it.
struct Deployment {
    cluster: NatsCluster,
    a: Server,
    b: Server,
    stream: String,
}

impl Deployment {
    /// Starts the cluster, then A (which creates `stream`), then B (which finds it).
    async fn start(stream: &str) -> Deployment {
        let cluster = NatsCluster::start().await;
        let a = Server::node(&cluster, stream).await;
        let b = Server::node(&cluster, stream).await;
        Deployment { cluster, a, b, stream: stream.to_owned() }
    }
}

/// The ids of `events`, in the order they came.
fn event_ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|event| event.id).collect()
}

/// Checks that `ids` increase strictly: one order, no duplicate.
fn assert_increasing(ids: &[u64], what: &str) {
    let disorder = ids.windows(2).find(|pair| pair[0] >= pair[1]);
    assert!(disorder.is_none(), "{what}: {disorder:?} out of order in {ids:?}");
}

/// Versions inserted on A reach a subscriber that connects to B afterwards, in order; versions
/// inserted on either node reach live subscribers of both; both nodes report one database and
/// audit the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_serve_one_database_in_one_order() {
    let Deployment { cluster: _cluster, a, b, .. } = Deployment::start("one_database").await;
    assert_eq!(a.health().await.database_id, b.health().await.database_id, "one database");

    let mut earlier = Vec::new();
    for n in 0..5 {
        earlier.push(a.insert(&format!("earlier-{n}"), json!(n)).await);
    }
    let mut on_b = Feed::open(b.addr(), None).await;
    assert_eq!(ids(&on_b.events(5, EVENT_TIMEOUT).await), ids(&earlier), "B's snapshot");
    let mut on_a = Feed::open(a.addr(), None).await;
    assert_eq!(ids(&on_a.events(5, EVENT_TIMEOUT).await), ids(&earlier), "A's snapshot");

    let mut live = Vec::new();
    for n in 0..6 {
        let node = if n % 2 == 0 { &a } else { &b };
        live.push(node.insert("live", json!(n)).await);
    }
    for (name, feed) in [("A", &mut on_a), ("B", &mut on_b)] {
        let events = feed.events(live.len(), EVENT_TIMEOUT).await;
        assert_eq!(ids(&events), ids(&live), "live on {name}");
    }
    // Both subscribers have every version, so both nodes have published them.
    assert_eq!(a.audit("live").await, live, "A's audit");
    assert_eq!(b.audit("live").await, live, "B's audit");
    assert_eq!(a.audit("earlier-3").await, b.audit("earlier-3").await, "one history");
}

/// A `Last-Event-ID` read on A resumes on B with exactly what follows it, whether B has long
/// had that id or has only just been told of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_read_on_one_node_resumes_exactly_on_the_other() {
    let Deployment { cluster: _cluster, a, b, .. } = Deployment::start("resume_elsewhere").await;
    let mut on_a = Feed::open(a.addr(), None).await;
    let mut inserted = Vec::new();
    for n in 0..10 {
        inserted.push(a.insert("resume", json!(n)).await);
    }
    let read = on_a.events(10, EVENT_TIMEOUT).await;
    assert_eq!(ids(&read), ids(&inserted), "A streams what it took");
    for n in 10..13 {
        inserted.push(b.insert("resume", json!(n)).await);
    }

    let mut on_b = Feed::open(b.addr(), Some(&read[3].last_event_id())).await;
    assert_eq!(on_b.start, "resumed", "{:?}", on_b.head);
    assert_eq!(on_b.head.header("broker-start"), Some("resumed"));
    let replayed = on_b.events(inserted.len() - 4, EVENT_TIMEOUT).await;
    assert_eq!(ids(&replayed), ids(&inserted[4..]), "B replays what follows, and only that");
    let next = a.insert("resume", json!("next")).await;
    assert_eq!(ids(&on_b.events(1, EVENT_TIMEOUT).await), ids(&[next]), "then goes on live");

    // The id B may not have yet: taken on A and read from A's stream at once.
    let caught_up = on_a.events(4, EVENT_TIMEOUT).await;
    assert_eq!(ids(&caught_up[..3]), ids(&inserted[10..]), "A streams B's inserts");
    for n in 0..10 {
        let fresh = a.insert("fresh", json!(n)).await;
        let event = on_a.events(1, EVENT_TIMEOUT).await.remove(0);
        assert_eq!(event.id, fresh.id);
        let mut on_b = Feed::open(b.addr(), Some(&event.last_event_id())).await;
        assert_eq!(on_b.start, "resumed", "round {n}: {:?}", on_b.head);
        let after = b.insert("fresh", json!(["after", n])).await;
        let events = on_b.events(1, EVENT_TIMEOUT).await;
        assert_eq!(ids(&events), ids(std::slice::from_ref(&after)), "round {n}: nothing between");
        let mirrored = on_a.events(1, EVENT_TIMEOUT).await;
        assert_eq!(ids(&mirrored), ids(&[after]), "round {n}: A streams B's insert");
    }
}

/// An insert acknowledged by a node is in the snapshot of a subscriber that then connects to
/// that node, on either node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_acknowledged_an_insert_has_it_in_the_next_snapshot() {
    let Deployment { cluster: _cluster, a, b, .. } = Deployment::start("read_your_writes").await;
    for n in 0..50 {
        let (name, node) = if n % 2 == 0 { ("A", &a) } else { ("B", &b) };
        let inserted = node.insert("mine", json!(n)).await;
        let mut feed = Feed::open(node.addr(), None).await;
        assert_eq!(feed.start, "snapshot");
        let first = feed.events(1, EVENT_TIMEOUT).await.remove(0);
        assert_eq!((first.id, first.json()), (inserted.id, json!(n)), "round {n} on {name}");
    }
}

/// 500 subscribers on each node all receive every version inserted through both, once each,
/// in one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_on_two_nodes_receive_every_version_once_in_one_order() {
    const PER_NODE: usize = 500;
    const WRITERS_PER_NODE: usize = 2;
    const INSERTS_PER_WRITER: usize = 50;
    let total = 2 * WRITERS_PER_NODE * INSERTS_PER_WRITER;
    let Deployment { cluster: _cluster, a, b, .. } = Deployment::start("many_subscribers").await;

    let mut feeds = Vec::new();
    for node in [&a, &b] {
        let opened = join_all((0..PER_NODE).map(|_| Feed::open(node.addr(), None))).await;
        feeds.extend(opened);
    }
    a.wait_for_subscribers(PER_NODE as u64, Duration::from_secs(30)).await;
    b.wait_for_subscribers(PER_NODE as u64, Duration::from_secs(30)).await;
    let readers: Vec<_> = feeds
        .into_iter()
        .map(|mut feed| {
            tokio::spawn(async move { event_ids(&feed.events(total, EVENT_TIMEOUT).await) })
        })
        .collect();

    // Each version is of its own event, so that a subscriber brought up to date after falling
    // behind still receives every one of them.
    let writers = (0..2 * WRITERS_PER_NODE).map(|w| {
        let node = if w % 2 == 0 { &a } else { &b };
        async move {
            let mut ids = Vec::new();
            for n in 0..INSERTS_PER_WRITER {
                ids.push(node.insert(&format!("w{w}-{n}"), json!(n)).await.id);
            }
            ids
        }
    });
    let mut acknowledged: Vec<u64> = join_all(writers).await.concat();
    acknowledged.sort_unstable();
    assert_increasing(&acknowledged, "acknowledged ids");

    for (i, reader) in join_all(readers).await.into_iter().enumerate() {
        let received = reader.expect("a subscriber's reader");
        assert_eq!(received, acknowledged, "subscriber {i} of {}", 2 * PER_NODE);
    }
}

/// An insert retried on B under the `Idempotency-Key` it was first sent to A with is answered
/// with the version A stored, and stores nothing; other data under that key is refused on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_holds_across_nodes() {
    let Deployment { cluster: _cluster, a, b, .. } = Deployment::start("idempotency").await;
    let data = json!({ "order": 1842 });
    let (stored, _) = a.insert_once("order", &data, "order-1842").await;
    let (retried, _) = b.insert_once("order", &data, "order-1842").await;
    assert_eq!((stored.status, retried.status), (201, 201), "{stored} {retried}");
    assert_eq!(retried.json(), stored.json(), "B answers with the version A stored");
    let (other, _) = b.insert_once("order", &json!({ "order": 1843 }), "order-1842").await;
    other.expect_error(422, "idempotency_key_reused");
    for node in [&a, &b] {
        let audit = node.audit("order").await;
        assert_eq!(audit.len(), 1, "one version stored: {audit:?}");
        assert_eq!(serde_json::to_value(audit[0].id).expect("an id"), stored.json()["id"]);
    }
}
