//! [`NatsCluster`]: the three `nats-server` processes that the `ours-nats` target's broker nodes
//! share, started for one run and stopped after it.
//!
//! The cluster is set up as `docs/SCALING.md` says a production one must be: JetStream writing
//! every message to disk before it acknowledges it (`sync_interval: always`), three nodes routed
//! to each other. Everything lives on loopback, on ports below the ephemeral range, with its
//! configuration, store and log in the run's temporary directory. Readiness is read from each
//! node's monitoring port, never guessed from time passing.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::procfs::Processes;

/// The nodes of the cluster: the fewest that keep a quorum with one of them down.
pub(crate) const NODES: usize = 3;
/// How long the cluster may take to elect its JetStream meta leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Three running `nats-server` processes. Dropping the cluster kills them.
pub(crate) struct NatsCluster {
    children: Vec<Child>,
    client_ports: Vec<u16>,
}

impl NatsCluster {
    /// Starts the three nodes of `nats_server` with their files under `dir`, and waits until
    /// every node has JetStream enabled and they agree on a meta leader that counts every node
    /// current: then a stream with three replicas can be created at once.
    pub(crate) async fn start(nats_server: &Path, dir: &Path) -> anyhow::Result<NatsCluster> {
        let ports = crate::ports::free_ports(NODES * 3)?;
        let (client_ports, rest) = ports.split_at(NODES);
        let (route_ports, http_ports) = rest.split_at(NODES);
        let routes: Vec<String> =
            route_ports.iter().map(|port| format!("\"nats-route://127.0.0.1:{port}\"")).collect();
        let mut cluster =
            NatsCluster { children: Vec::with_capacity(NODES), client_ports: client_ports.into() };
        for node in 0..NODES {
            let home = dir.join(format!("nats-{node}"));
            fs::create_dir_all(&home).context("create a NATS node's directory")?;
            let config = home.join("nats.conf");
            let text = format!(
                "server_name: n{node}\n\
                 listen: \"127.0.0.1:{client}\"\n\
                 http: \"127.0.0.1:{http}\"\n\
                 jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n\
                 cluster {{\n  name: broker-bench\n  listen: \"127.0.0.1:{route}\"\n  \
                 routes: [{routes}]\n}}\n",
                client = client_ports[node],
                http = http_ports[node],
                route = route_ports[node],
                store = home.join("store"),
                routes = routes.join(", "),
            );
            fs::write(&config, text).context("write a NATS node's configuration")?;
            let log = fs::File::create(home.join("nats.log")).context("create a NATS log")?;
            let child = Command::new(nats_server)
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| {
                    format!(
                        "cannot run {} (`cargo xtask setup` installs it)",
                        nats_server.display()
                    )
                })?;
            cluster.children.push(child);
        }
        let monitors: Vec<SocketAddr> =
            http_ports.iter().map(|&port| SocketAddr::from((Ipv4Addr::LOCALHOST, port))).collect();
        let started = Instant::now();
        loop {
            let reason = match ready(&monitors).await {
                Ok(()) => return Ok(cluster),
                Err(reason) => reason,
            };
            for (node, child) in cluster.children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait()? {
                    let log = dir.join(format!("nats-{node}/nats.log"));
                    bail!("nats-server n{node} exited: {status}; see {}", log.display());
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!("the NATS cluster was not ready within {READY_TIMEOUT:?}: {reason}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The client URLs of the nodes, as `broker-server --nats` takes them.
    pub(crate) fn urls(&self) -> String {
        let urls: Vec<String> =
            self.client_ports.iter().map(|port| format!("nats://127.0.0.1:{port}")).collect();
        urls.join(",")
    }

    /// The nodes' processes, measured together.
    pub(crate) fn processes(&self) -> Processes {
        Processes(self.children.iter().filter_map(Child::id).collect())
    }

    /// Stops every node by its process id with SIGTERM, and kills those still running after
    /// [`EXIT_TIMEOUT`].
    pub(crate) async fn stop(mut self) {
        for pid in &self.processes().0 {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        }
        for child in &mut self.children {
            if tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

/// `Ok` once every node answers `/healthz?js-enabled-only=true` with 200, every node names the
/// same meta leader in `/jsz`, and that leader counts every other node as current.
async fn ready(monitors: &[SocketAddr]) -> Result<(), String> {
    for (node, &addr) in monitors.iter().enumerate() {
        match crate::client::get(addr, "/healthz?js-enabled-only=true").await {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                let body = String::from_utf8_lossy(&body).into_owned();
                return Err(format!("n{node}'s /healthz answers {status}: {body}"));
            }
            Err(error) => return Err(format!("n{node}'s /healthz: {error:#}")),
        }
    }
    let mut pages = Vec::with_capacity(monitors.len());
    for (node, &addr) in monitors.iter().enumerate() {
        let (_, body) =
            crate::client::get(addr, "/jsz").await.map_err(|e| format!("n{node}'s /jsz: {e:#}"))?;
        let page: Value =
            serde_json::from_slice(&body).map_err(|e| format!("n{node}'s /jsz: {e}"))?;
        pages.push(page);
    }
    let leaders: Vec<&str> =
        pages.iter().map(|page| page["meta_cluster"]["leader"].as_str().unwrap_or("")).collect();
    let leader = leaders[0];
    if leader.is_empty() || leaders.iter().any(|other| *other != leader) {
        return Err(format!("the nodes name the meta leaders {leaders:?}"));
    }
    // Node `i` is the server named `n<i>` (see its configuration).
    let node = leader.strip_prefix('n').and_then(|node| node.parse::<usize>().ok());
    let Some(leader_page) = node.and_then(|node| pages.get(node)) else {
        return Err(format!("the meta leader {leader} is none of the nodes"));
    };
    let replicas = leader_page["meta_cluster"]["replicas"].as_array().cloned().unwrap_or_default();
    let current = replicas.iter().filter(|replica| replica["current"] == true).count();
    if current + 1 < monitors.len() {
        return Err(format!("the meta leader {leader} counts {current} other nodes current"));
    }
    Ok(())
}
