//! Starting and stopping a server under test, each in its own process (or several: the broker
//! nodes of `ours-nats`, and the NATS cluster under them), and finding its processes for memory
//! and CPU figures.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::nats::NatsCluster;
use crate::ports::free_port;
use crate::procfs::{self, Processes};
use crate::target::Target;

/// The stream the `ours-nats` nodes share.
const NATS_STREAM: &str = "bench";

/// Where the programs under test are.
#[derive(Clone, Debug)]
pub(crate) struct Programs {
    pub(crate) broker_server: PathBuf,
    pub(crate) broker_0_2_0: PathBuf,
    pub(crate) nginx: PathBuf,
    pub(crate) nchan_conf: PathBuf,
    pub(crate) nats_server: PathBuf,
    /// How many broker nodes `ours-nats` runs over the NATS cluster.
    pub(crate) broker_nodes: usize,
}

/// A running server: one process, or the nodes of `ours-nats`, which serve the same database at
/// several addresses. Dropping it kills it and every process it started.
pub(crate) struct Server {
    pub(crate) target: Target,
    /// Where clients connect: one address per node, in the order of `children`.
    pub(crate) addrs: Vec<SocketAddr>,
    /// When the (first) process was started.
    pub(crate) spawned: Instant,
    /// How long it took from start to its first HTTP answer (the first node's).
    pub(crate) startup: Duration,
    /// One process per node.
    children: Vec<Child>,
    /// The NATS servers the nodes store into, for `ours-nats`.
    cluster: Option<NatsCluster>,
}

impl Server {
    /// Starts `target` with its data in `dir` (which must exist) and waits until it answers HTTP.
    ///
    /// `max_connections` is passed to our server as its connection and its subscriber limit,
    /// beyond which it refuses connections;
    /// the peers are configured for 19,000 or more already.
    pub(crate) async fn start(
        target: Target,
        programs: &Programs,
        dir: &Path,
        max_connections: usize,
    ) -> anyhow::Result<Server> {
        let started = Instant::now();
        let log = dir.join("server.log");
        let mut cluster = None;
        let (child, addr) = match target {
            Target::Ours => {
                let mut command = ours(programs, max_connections, &log)?;
                command.arg("--data").arg(dir.join("b.redb"));
                let mut child = spawn(&mut command, &programs.broker_server)?;
                let addr = listening_line(&mut child).await?;
                (child, addr)
            }
            Target::OursNats => {
                let nats = NatsCluster::start(&programs.nats_server, dir).await?;
                let mut command = ours(programs, max_connections, &log)?;
                command.args(nats_args(&nats));
                let mut child = spawn(&mut command, &programs.broker_server)?;
                cluster = Some(nats);
                let addr = listening_line(&mut child).await?;
                (child, addr)
            }
            Target::Nchan => {
                let port = free_port()?;
                let conf = nchan_conf(&programs.nchan_conf, dir, port)?;
                let log = fs::File::create(&log).context("create the server log")?;
                let child = Command::new(&programs.nginx)
                    .arg("-p")
                    .arg(dir)
                    .arg("-c")
                    .arg(conf)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("cannot run {}", programs.nginx.display()))?;
                (child, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            }
            Target::Broker => {
                let port = free_port()?;
                // It logs every request (at debug level, which it sets itself): its log is part
                // of its cost, so it is written, to a file.
                let log = fs::File::create(&log).context("create the server log")?;
                let child = Command::new(&programs.broker_0_2_0)
                    .current_dir(dir)
                    .env("PORT", port.to_string())
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("cannot run {}", programs.broker_0_2_0.display()))?;
                (child, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            }
        };
        let mut server = Server {
            target,
            addrs: vec![addr],
            spawned: started,
            startup: Duration::ZERO,
            children: vec![child],
            cluster,
        };
        server.startup = server.wait_until_serving(0, started, &log).await?;
        // The first node has created the stream by now, so the others find it.
        if let Some(nats) = &server.cluster {
            let args = nats_args(nats);
            for node in 1..programs.broker_nodes {
                let log = dir.join(format!("server-{node}.log"));
                let mut command = ours(programs, max_connections, &log)?;
                command.args(&args);
                let mut child = spawn(&mut command, &programs.broker_server)?;
                let addr = listening_line(&mut child).await?;
                server.addrs.push(addr);
                server.children.push(child);
                server.wait_until_serving(node, Instant::now(), &log).await?;
            }
        }
        Ok(server)
    }

    /// Polls a cheap route of node `node` until it answers, for at most 20 s.
    async fn wait_until_serving(
        &mut self,
        node: usize,
        started: Instant,
        log: &Path,
    ) -> anyhow::Result<Duration> {
        let path = self.probe_path();
        loop {
            if let Ok((status, _)) = crate::client::get(self.addrs[node], path).await
                && status < 500
            {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.children[node].try_wait()? {
                let log = fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "{} exited before serving: {status}; its log ends with: {}",
                    self.target,
                    tail.join(" | ")
                );
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("{} did not answer HTTP within 20 s", self.target);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn probe_path(&self) -> &'static str {
        match self.target {
            Target::Ours | Target::OursNats => "/healthz",
            Target::Nchan => "/nchan_status",
            Target::Broker => "/audit/probe",
        }
    }

    /// The address of the first node: where a single client goes.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The server's processes, measured together: every node, or nginx's master and its
    /// workers. The NATS servers under `ours-nats` are not among them (see
    /// [`storage_processes`](Server::storage_processes)).
    pub(crate) fn processes(&self) -> Processes {
        Processes(self.nodes().into_iter().flat_map(|node| node.0).collect())
    }

    /// The processes of each node, in the order of `addrs`.
    pub(crate) fn nodes(&self) -> Vec<Processes> {
        let mut nodes = Vec::new();
        for child in &self.children {
            let Some(pid) = child.id() else { continue };
            let mut pids = vec![pid];
            if self.target == Target::Nchan {
                pids.extend(procfs::children(pid));
            }
            nodes.push(Processes(pids));
        }
        nodes
    }

    /// The processes that store for the server when they are not its own: the NATS servers of
    /// `ours-nats`; none otherwise.
    pub(crate) fn storage_processes(&self) -> Option<Processes> {
        self.cluster.as_ref().map(NatsCluster::processes)
    }

    /// Stops the server: gracefully where it supports that, within a few seconds in any case;
    /// the broker nodes before the NATS servers they store into.
    pub(crate) async fn stop(mut self) {
        let processes = self.processes();
        let signal = match self.target {
            Target::Ours | Target::OursNats | Target::Nchan => Signal::SIGTERM,
            // It ignores SIGTERM for a while.
            Target::Broker => Signal::SIGKILL,
        };
        for child in &self.children {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), signal);
            }
        }
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
                eprintln!("{} did not stop within 15 s; killing it", self.target);
            }
        }
        kill_all(&processes);
        if let Some(cluster) = self.cluster.take() {
            cluster.stop().await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_all(&self.processes());
        // The cluster's processes die with it: they were spawned with `kill_on_drop`.
    }
}

/// Our server's command line, common to both setups, with its standard error into `log`.
fn ours(programs: &Programs, max_connections: usize, log: &Path) -> anyhow::Result<Command> {
    let log = fs::File::create(log).context("create the server log")?;
    let mut command = Command::new(&programs.broker_server);
    command
        .args(["--port", "0"])
        .args(["--max-connections", &max_connections.to_string()])
        // Every connection of a fan-out is a subscriber. Through the environment, so that
        // servers from before the setting existed start all the same.
        .env("BROKER_MAX_SUBSCRIBERS", max_connections.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    Ok(command)
}

/// The flags that put a broker node on `cluster`'s stream, with a copy on every NATS server.
fn nats_args(cluster: &NatsCluster) -> Vec<String> {
    let replicas = crate::nats::NODES.to_string();
    ["--nats", &cluster.urls(), "--nats-stream", NATS_STREAM, "--nats-replicas", &replicas]
        .map(str::to_owned)
        .to_vec()
}

fn spawn(command: &mut Command, program: &Path) -> anyhow::Result<Child> {
    command.spawn().with_context(|| format!("cannot run {}", program.display()))
}

fn kill_all(processes: &Processes) {
    for &pid in &processes.0 {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Reads our server's one line of standard output: `broker-server listening on http://ADDR`.
async fn listening_line(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let stdout = child.stdout.take().context("no standard output")?;
    let mut line = String::new();
    let mut stdout = BufReader::new(stdout);
    let read = stdout.read_line(&mut line);
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .context("broker-server printed no address within 30 s")??;
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|addr| addr.parse().ok())
        .with_context(|| format!("unexpected first line from broker-server: {line:?}"))?;
    Ok(addr)
}

/// A copy of the shared nchan configuration, listening on `port`, in the foreground (so that
/// the master is our child), with its paths under `dir`.
fn nchan_conf(original: &Path, dir: &Path, port: u16) -> anyhow::Result<PathBuf> {
    let text = fs::read_to_string(original)
        .with_context(|| format!("cannot read {}", original.display()))?;
    let replaced = text
        .replace("listen 127.0.0.1:8088;", &format!("listen 127.0.0.1:{port};"))
        .replace("daemon on;", "daemon off;");
    if !replaced.contains(&format!(":{port};")) || !replaced.contains("daemon off;") {
        bail!(
            "{} changed: no `listen 127.0.0.1:8088;` or `daemon on;` to adapt",
            original.display()
        );
    }
    fs::create_dir_all(dir.join("logs"))?;
    fs::create_dir_all(dir.join("tmp"))?;
    let path = dir.join("nchan.conf");
    fs::write(&path, replaced)?;
    Ok(path)
}
