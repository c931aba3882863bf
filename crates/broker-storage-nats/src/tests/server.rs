//! [`NatsServers`]: real `nats-server` processes with JetStream on 127.0.0.1, for the tests of
//! this crate: one server alone, or three in a cluster. The tests of servers that die are in
//! the workspace's `tests` package.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker_storage::Storage as _;
use tempfile::TempDir;

use crate::{NatsOptions, NatsStorage};

/// `nats-server` processes, killed when dropped.
pub(super) struct NatsServers {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    /// How many replicas a stream has: one per server.
    replicas: usize,
    /// Holds the configurations and stores; declared last so that it is removed after the
    /// processes are gone.
    _dir: TempDir,
}

impl NatsServers {
    /// One server, not clustered. Stores that connect to it wait for it to be ready (see
    /// [`NatsOptions::connect_timeout`]).
    ///
    /// A server that is not clustered checks a publish's expected last sequence before its
    /// message id, so the probes of `append.rs` cannot find a duplicate there: tests that
    /// append a batch repeating a stored idempotency key need [`NatsServers::cluster`].
    pub(super) fn single() -> NatsServers {
        NatsServers::start(1)
    }

    /// Three servers in a cluster, once they take streams of three replicas.
    pub(super) async fn cluster() -> NatsServers {
        let servers = NatsServers::start(3);
        // A new cluster elects its JetStream leader and learns its peers within seconds; until
        // then, creating a stream fails in several ways.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match NatsStorage::connect(servers.options("ready")).await {
                Ok(store) => {
                    store.close().await.expect("close");
                    return servers;
                }
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "the cluster is not ready yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => panic!("the cluster did not get ready: {error}"),
            }
        }
    }

    /// Starts `count` servers, routed to each other if more than one.
    fn start(count: usize) -> NatsServers {
        let dir = TempDir::new().expect("create a temporary directory");
        // Every port is held until all are chosen, so that no two are the same. They are let
        // go just before the servers start; another process taking one in between makes a
        // server fail to start, and the test with it.
        let listeners: Vec<TcpListener> = (0..count * 2)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|listener| listener.local_addr().expect("a bound address").port())
            .collect();
        let (client_ports, route_ports) = ports.split_at(count);
        let routes: Vec<String> =
            route_ports.iter().map(|port| format!("\"nats-route://127.0.0.1:{port}\"")).collect();
        let configs: Vec<_> = (0..count)
            .map(|i| {
                let home = dir.path().join(format!("n{i}"));
                std::fs::create_dir(&home).expect("create a server's directory");
                let cluster = if count > 1 {
                    format!(
                        "cluster {{ name: test, listen: \"127.0.0.1:{}\", routes: [{}] }}",
                        route_ports[i],
                        routes.join(", ")
                    )
                } else {
                    String::new()
                };
                let text = format!(
                    "server_name: n{i}\nlisten: \"127.0.0.1:{}\"\njetstream {{ store_dir: {:?} \
                     }}\n{cluster}\n",
                    client_ports[i],
                    home.join("store"),
                );
                let config = home.join("nats.conf");
                std::fs::write(&config, text).expect("write a server's configuration");
                config
            })
            .collect();
        drop(listeners);
        let children = configs
            .iter()
            .map(|config| {
                Command::new("nats-server")
                    .arg("--config")
                    .arg(config)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|error| {
                        panic!(
                            "cannot run nats-server ({error}): it is a test tool; install it \
                             with `cargo xtask setup`"
                        )
                    })
            })
            .collect();
        NatsServers { children, client_ports: client_ports.to_vec(), replicas: count, _dir: dir }
    }

    /// The client URL of the first server.
    pub(super) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_ports[0])
    }

    /// Options for the stream `stream` on these servers, a replica on each, pruning on.
    pub(super) fn options(&self, stream: &str) -> NatsOptions {
        NatsOptions {
            servers: self
                .client_ports
                .iter()
                .map(|port| format!("nats://127.0.0.1:{port}"))
                .collect(),
            stream: stream.to_owned(),
            replicas: self.replicas,
            prune: true,
            ..NatsOptions::default()
        }
    }
}

impl Drop for NatsServers {
    fn drop(&mut self) {
        for child in &mut self.children {
            // Already gone if it failed to start; either way there is nothing more to do.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
