//! [`NatsCluster`]: three real `nats-server` processes with JetStream, clustered on 127.0.0.1,
//! for the tests of the storage backend that keeps its data in a replicated stream.
//!
//! Each node has its own configuration file, store directory and log in one temporary
//! directory, and fixed ports chosen free at start, so that a node killed or stopped comes back
//! as the same peer at the same addresses. What the cluster thinks of itself is read from each
//! node's monitoring endpoint (`/healthz`, `/jsz`), never guessed from time passing.

mod monitor;
mod request;

use std::fmt::Write as _;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

/// How many nodes a cluster has: the fewest that keep a quorum with one of them down.
pub const NODES: usize = 3;

/// How long the cluster may take to elect a leader and bring every running node up to date, at
/// start, after a restart, or after a leader was killed. An election takes a few seconds; the
/// rest is room for a machine busy with other tests.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node may take to exit after a signal.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// The pause between two looks at the monitoring endpoints.
const POLL: Duration = Duration::from_millis(100);
/// How long one try of a JetStream API request waits for its reply.
const API_TRY: Duration = Duration::from_secs(5);

/// The name the cluster's routes announce.
const CLUSTER_NAME: &str = "broker-test";

/// Three `nats-server` processes with JetStream, routed to each other.
///
/// Nodes are numbered `0..NODES`; node `i` is the server named `n<i>`. Every child is killed
/// when the `NatsCluster` is dropped, so a failing test leaves nothing behind.
pub struct NatsCluster {
    nodes: Vec<Node>,
    client: reqwest::Client,
    /// Holds the configuration files, the stores and the logs; declared last so that it is
    /// removed after the children are gone.
    _dir: tempfile::TempDir,
}

/// One node: what it needs to start again exactly as it was, and its process while it runs.
struct Node {
    name: String,
    client_port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    /// `None` while the node is down, after [`NatsCluster::kill`] or [`NatsCluster::stop`].
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts three nodes and waits until they have elected a JetStream meta leader that counts
    /// every node as current, so that a stream with three replicas can be created at once.
    ///
    /// Panics with the instruction to run `cargo xtask setup` if `nats-server` is not installed.
    pub async fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        // Every port is held until all are chosen, so that no two are the same; they are let go
        // just before the servers start, which leaves a short window for another process to take
        // one, and then a node fails to start and says so in its log.
        let listeners: Vec<TcpListener> = (0..NODES * 3)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|listener| listener.local_addr().expect("a bound address").port())
            .collect();
        let routes: Vec<String> =
            (0..NODES).map(|i| format!("nats-route://127.0.0.1:{}", ports[NODES + i])).collect();
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let name = format!("n{i}");
            let home = dir.path().join(&name);
            std::fs::create_dir(&home).expect("create a node's directory");
            let (client_port, route_port, http_port) =
                (ports[i], ports[NODES + i], ports[2 * NODES + i]);
            let config = home.join("nats.conf");
            let text = config_text(&name, client_port, route_port, http_port, &home, &routes);
            std::fs::write(&config, text).expect("write a node's configuration");
            let log = home.join("nats.log");
            nodes.push(Node { name, client_port, http_port, config, log, child: None });
        }
        drop(listeners);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("build an HTTP client");
        let mut cluster = NatsCluster { nodes, client, _dir: dir };
        for i in 0..NODES {
            cluster.spawn(i);
        }
        cluster.wait("the cluster to be ready", || cluster.ready()).await;
        cluster
    }

    /// The client URLs of every node, comma-separated, as NATS clients take a server list:
    /// `nats://127.0.0.1:p0,nats://127.0.0.1:p1,nats://127.0.0.1:p2`.
    pub fn urls(&self) -> String {
        (0..NODES).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    /// The client URL of node `i`: `nats://127.0.0.1:<port>`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The monitoring URL of node `i` for `path_and_query` (`/jsz?streams=true`).
    pub fn monitor_url(&self, i: usize, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.nodes[i].http_port)
    }

    /// The process id of node `i`; panics if it is down.
    pub fn pid(&self, i: usize) -> u32 {
        let child = self.nodes[i].child.as_ref();
        child.and_then(Child::id).unwrap_or_else(|| panic!("node {i} is down"))
    }

    /// Whether node `i` runs (it was not killed or stopped, or has been restarted since).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// What node `i` has logged so far, for failure messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Kills node `i` with SIGKILL, as a crash would, and waits for it to be gone. Its store
    /// keeps whatever had reached the disk.
    pub async fn kill(&mut self, i: usize) {
        let child = self.running(i);
        child.start_kill().unwrap_or_else(|error| panic!("kill node {i}: {error}"));
        self.reap(i, "SIGKILL").await;
    }

    /// Stops node `i` with SIGTERM, the way an operator shuts a server down, and waits for it to
    /// exit.
    pub async fn stop(&mut self, i: usize) {
        let pid = self.pid(i);
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.reap(i, "SIGTERM").await;
    }

    /// Starts node `i` again with the same configuration, store and ports (stopping it with
    /// SIGTERM first if it runs), and waits until it is back in the cluster and caught up: the
    /// meta leader counts it current, and it holds every message that each stream's leader
    /// holds.
    pub async fn restart(&mut self, i: usize) {
        if self.is_running(i) {
            self.stop(i).await;
        }
        self.spawn(i);
        self.wait("the restarted node to catch up", || self.ready()).await;
    }

    /// The node that leads the JetStream meta group, once every running node names the same
    /// running node; waits for an election if there is none (after the leader was killed).
    pub async fn meta_leader(&self) -> usize {
        self.wait("a meta leader", || self.agreed_meta_leader()).await
    }

    /// The node that leads `stream`, once a running node reports one; waits for an election if
    /// there is none (after the leader was killed). Panics if no leader appears in time.
    pub async fn stream_leader(&self, stream: &str) -> usize {
        self.wait(&format!("a leader of stream {stream}"), || self.reported_stream_leader(stream))
            .await
    }

    /// Sends `payload` on `subject` to node `i` as a JetStream API request that is answered
    /// alike however often it is sent, and returns the JSON reply: `$JS.API.STREAM.INFO.<stream>`,
    /// or `$JS.API.STREAM.CREATE.<stream>` with the stream's configuration (the same
    /// configuration again finds the stream made). A cluster busy with another stream or an election may leave a request unanswered,
    /// so it is sent again, each time waiting [`API_TRY`], until [`READY_TIMEOUT`] has passed.
    /// This is the NATS protocol written out by hand, so that a test can check what a backend did
    /// to the cluster without going through the client library the backend uses.
    pub async fn api_request(&self, i: usize, subject: &str, payload: &[u8]) -> Value {
        let url = self.url(i);
        let addr = url.strip_prefix("nats://").expect("a nats:// URL");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(reply) = request::try_request(addr, subject, payload, API_TRY).await {
                return reply;
            }
            assert!(
                Instant::now() < deadline,
                "no reply to {subject} from node {i} within {READY_TIMEOUT:?}"
            );
        }
    }

    /// A publish to a stream's subject through node `i`, carrying `msg_id` as its `Nats-Msg-Id`,
    /// which JetStream stores once however often it is sent: the acknowledgement, or `None` if
    /// none comes within `timeout` (while the stream elects a leader, say).
    pub async fn try_publish(
        &self,
        i: usize,
        subject: &str,
        msg_id: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Option<Value> {
        let url = self.url(i);
        let addr = url.strip_prefix("nats://").expect("a nats:// URL");
        request::try_publish(addr, subject, msg_id, payload, timeout).await
    }

    /// Node `i`'s own replica of `stream`, as its `/jsz?streams=true` describes it: `state`
    /// (`last_seq`, `messages`) is what this node holds, which a follower that is behind shows
    /// and `$JS.API.STREAM.INFO` (answered by the leader) does not; `cluster.leader` is the
    /// leader it follows. Panics if the node holds no replica of the stream.
    pub async fn replica(&self, i: usize, stream: &str) -> Value {
        let detail =
            self.replica_or_none(i, stream).await.unwrap_or_else(|error| panic!("{error}"));
        detail.unwrap_or_else(|| panic!("node {i} holds no replica of stream {stream}"))
    }

    /// Node `i`'s `/jsz` page with `query` (`""`, `"?streams=true"`), as JSON.
    pub async fn jsz(&self, i: usize, query: &str) -> Value {
        self.monitor(i, &format!("/jsz{query}")).await.unwrap_or_else(|error| panic!("{error}"))
    }

    /// Node `i`'s `/varz`: its settings, JetStream's among them.
    pub async fn varz(&self, i: usize) -> Value {
        self.monitor(i, "/varz").await.unwrap_or_else(|error| panic!("{error}"))
    }

    fn running(&mut self, i: usize) -> &mut Child {
        self.nodes[i].child.as_mut().unwrap_or_else(|| panic!("node {i} is down"))
    }

    /// Starts node `i`'s process. Panics if `nats-server` cannot be run at all.
    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open a node's log file");
        let stderr = log.try_clone().expect("share the log file");
        let child = Command::new("nats-server")
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run nats-server ({error}): it is a test tool; install it with \
                     `cargo xtask setup` (as root, or it prints the commands to run)"
                )
            });
        node.child = Some(child);
    }

    /// Waits for node `i` to exit after `signal` and marks it down.
    async fn reap(&mut self, i: usize, signal: &str) {
        let child = self.running(i);
        let status = tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await;
        let status = status
            .unwrap_or_else(|_| panic!("node {i} did not exit within {EXIT_TIMEOUT:?} of {signal}"))
            .unwrap_or_else(|error| panic!("wait for node {i}: {error}"));
        // SIGKILL leaves no exit code; a node stopped cleanly exits 0.
        assert!(
            signal == "SIGKILL" || status.success(),
            "node {i} exited with {status} after {signal}; log:\n{}",
            self.log(i)
        );
        self.nodes[i].child = None;
    }

    /// Calls `check` until it returns `Ok`, for at most [`READY_TIMEOUT`]; then panics with
    /// its last reason and the logs.
    async fn wait<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let start = Instant::now();
        loop {
            let reason = match check().await {
                Ok(value) => return value,
                Err(reason) => reason,
            };
            if start.elapsed() > READY_TIMEOUT {
                panic!("waited {READY_TIMEOUT:?} for {what}: {reason}\n{}", self.logs());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The index of the running node called `name`.
    fn running_node(&self, name: &str) -> Option<usize> {
        self.up().find(|&i| self.nodes[i].name == name)
    }

    /// The running nodes, in order.
    fn up(&self) -> impl Iterator<Item = usize> + '_ {
        (0..NODES).filter(|&i| self.is_running(i))
    }

    /// Node `i`'s monitoring page at `path_and_query`, as JSON.
    async fn monitor(&self, i: usize, path_and_query: &str) -> Result<Value, String> {
        let url = self.monitor_url(i, path_and_query);
        let reply =
            self.client.get(&url).send().await.map_err(|error| format!("{url}: {error}"))?;
        reply.json().await.map_err(|error| format!("{url}: {error}"))
    }

    /// Every node's log, each under its name, for failure messages.
    fn logs(&self) -> String {
        let mut logs = String::new();
        for i in 0..NODES {
            let _ = write!(logs, "--- log of n{i}:\n{}", self.log(i));
        }
        logs
    }
}

/// The configuration of one node: JetStream writing every message to disk before it is
/// acknowledged (`sync_interval: always`, as a database's storage must), and routes to all three
/// nodes (a route to itself is ignored).
fn config_text(
    name: &str,
    client_port: u16,
    route_port: u16,
    http_port: u16,
    home: &std::path::Path,
    routes: &[String],
) -> String {
    let store = home.join("store");
    format!(
        "server_name: {name}
listen: \"127.0.0.1:{client_port}\"
http: \"127.0.0.1:{http_port}\"
jetstream {{
  store_dir: {store:?}
  sync_interval: always
}}
cluster {{
  name: {CLUSTER_NAME}
  listen: \"127.0.0.1:{route_port}\"
  routes: [{routes}]
}}
",
        routes = routes.iter().map(|route| format!("\"{route}\"")).collect::<Vec<_>>().join(", ")
    )
}
