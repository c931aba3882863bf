//! The three-node NATS cluster that the clustered storage tests run on: it starts with
//! JetStream on every node and one meta leader, elects another when the leader dies, and a
//! stream on three replicas outlives the loss of its leader.

use std::time::Duration;

use serde_json::json;

use crate::support::{NODES, NatsCluster};

#[tokio::test]
async fn a_killed_meta_leader_is_replaced_by_an_election() {
    let mut cluster = NatsCluster::start().await;
    let leader = cluster.meta_leader().await;
    for i in 0..NODES {
        let jsz = cluster.jsz(i, "").await;
        assert!(jsz["config"]["store_dir"].is_string(), "node {i} has no JetStream: {jsz}");
        assert_eq!(jsz["meta_cluster"]["cluster_size"], NODES, "node {i}: {jsz}");
        assert_eq!(jsz["meta_cluster"]["leader"], format!("n{leader}"), "node {i}: {jsz}");
    }

    // meta_leader waits for the election, and fails the test if none is done in 30 s.
    cluster.kill(leader).await;
    let successor = cluster.meta_leader().await;
    assert_ne!(successor, leader, "the killed node cannot lead");

    // The killed node comes back from its own store; restart waits until it follows the leader
    // and is current.
    cluster.restart(leader).await;

    // A follower shut down the way an operator does it exits cleanly and leaves the leader be.
    let leader = cluster.meta_leader().await;
    let follower = (0..NODES).find(|&i| i != leader).expect("three nodes");
    cluster.stop(follower).await;
    assert!(!cluster.is_running(follower));
    assert_eq!(cluster.meta_leader().await, leader);
    cluster.restart(follower).await;
}

#[tokio::test]
async fn a_stream_on_three_replicas_keeps_its_messages_when_its_leader_is_killed() {
    let mut cluster = NatsCluster::start().await;
    let config = json!({"name": "S", "subjects": ["s.>"], "num_replicas": 3, "storage": "file"});
    let created =
        cluster.api_request(0, "$JS.API.STREAM.CREATE.S", config.to_string().as_bytes()).await;
    assert_eq!(created["config"]["num_replicas"], 3, "{created}");
    // A stream just created answers publishes once its replicas have elected a leader.
    cluster.stream_leader("S").await;
    let ack = publish_once(&cluster, 1, "s.one", b"first").await;
    assert_eq!((&ack["stream"], &ack["seq"]), (&json!("S"), &json!(1)), "{ack}");
    // Sent again, as an unanswered publish is, it is not stored twice.
    let again = publish_once(&cluster, 2, "s.one", b"first").await;
    assert_eq!((&again["seq"], &again["duplicate"]), (&json!(1), &json!(true)), "{again}");

    // Every node, by the URL a client would be given, answers for the stream and names the
    // leader the monitoring endpoint names.
    let leader = cluster.stream_leader("S").await;
    let urls = cluster.urls();
    assert_eq!(urls.split(',').count(), NODES, "{urls}");
    for (i, url) in urls.split(',').enumerate() {
        assert_eq!(url, cluster.url(i));
        let info = cluster.api_request(i, "$JS.API.STREAM.INFO.S", b"").await;
        assert_eq!(info["cluster"]["leader"], format!("n{leader}"), "node {i}: {info}");
    }

    cluster.kill(leader).await;
    let successor = cluster.stream_leader("S").await;
    assert_ne!(successor, leader, "the killed node cannot lead");
    let ack = publish_once(&cluster, successor, "s.two", b"second").await;
    assert_eq!(ack["seq"], 2, "the new leader appends after what the old one acknowledged: {ack}");

    // Back from its store, the killed node catches up on what it missed.
    cluster.restart(leader).await;
    let replica = cluster.replica(leader, "S").await;
    assert_eq!(replica["state"]["last_seq"], 2, "{replica}");
}

/// Publishes `payload` on `subject` of stream `S` through node `i`, and returns the
/// acknowledgement. While a leader is being elected or is taking over, a publish may go
/// unanswered: it is sent again, with the same `Nats-Msg-Id`, so that JetStream stores it once.
/// Fails the test if no leader takes it within 30 s.
async fn publish_once(
    cluster: &NatsCluster,
    i: usize,
    subject: &str,
    payload: &[u8],
) -> serde_json::Value {
    let id = format!("{subject}-once");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let patience = Duration::from_secs(2);
        if let Some(ack) = cluster.try_publish(i, subject, &id, payload, patience).await
            && ack.get("seq").is_some()
        {
            return ack;
        }
        assert!(std::time::Instant::now() < deadline, "no leader took the publish in 30 s");
    }
}
