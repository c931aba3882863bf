//! [`Server`]: the real `broker-server` binary, started in a fresh temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long the server may take to print its listening line, and to exit after a signal.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// What the server prints on stdout, followed by `http://` or `https://` and the address.
const LISTENING: &str = "broker-server listening on ";

/// Environment variables the server reads besides those starting with `BROKER_`; the harness
/// removes them all from the child's environment so that only what a test passes configures the
/// server.
const SERVER_ENV: [&str; 2] = ["PORT", "RUST_LOG"];

/// A running `broker-server` on `127.0.0.1:<free port>` with its own database file.
///
/// The child is killed when the `Server` is dropped, so a failing test leaves nothing behind.
pub struct Server {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
    /// `http`, or `https` for a server given a certificate.
    scheme: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    data_path: PathBuf,
    log_path: PathBuf,
    pub(super) client: reqwest::Client,
    /// Holds the database and the log; declared last so that it is removed after the child is
    /// gone.
    _dir: tempfile::TempDir,
}

/// How a server exited after [`Server::stop`].
#[derive(Debug)]
pub struct Exit {
    /// The exit status.
    pub status: ExitStatus,
    /// The time from the signal to the exit.
    pub elapsed: Duration,
    /// Whatever the server printed on stdout after its listening line.
    pub stdout_rest: String,
}

impl Server {
    /// Starts a server with the default configuration.
    pub async fn start() -> Server {
        Server::start_with(&[], &[]).await
    }

    /// Starts a server with extra command-line arguments and environment variables.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let data_path = dir.path().join("broker.redb");
        let log_path = dir.path().join("server.log");
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let env: Vec<(String, String)> =
            env.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        let (child, stdout, (scheme, addr)) = spawn(&args, &env, &data_path, &log_path).await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build an HTTP client");
        Server { child, stdout, addr, scheme, args, env, data_path, log_path, client, _dir: dir }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The absolute URL of `path_and_query` on this server.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}://{}{path_and_query}", self.scheme, self.addr)
    }

    /// The database file.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// How the server exited, if it has; `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("query the server's state")
    }

    /// What the server has logged on stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends `signal` (as `kill` names it: `TERM`, `INT`) and waits for the server to exit.
    pub async fn stop(&mut self, signal: &str) -> Exit {
        self.signal(signal);
        self.wait_for_exit(signal).await
    }

    /// Sends `signal` (as `kill` names it: `TERM`, `INT`) without waiting.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid();
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
    }

    /// Waits for the server to exit after `signal` was sent.
    pub async fn wait_for_exit(&mut self, signal: &str) -> Exit {
        let start = Instant::now();
        let status = tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the server did not exit within {EXIT_TIMEOUT:?} of SIG{signal}; log:\n{}",
                    self.log()
                )
            })
            .expect("wait for the server");
        let elapsed = start.elapsed();
        let mut stdout_rest = String::new();
        let rest = self.stdout.get_mut().read_to_string(&mut stdout_rest);
        tokio::time::timeout(Duration::from_secs(5), rest)
            .await
            .expect("stdout closes once the server has exited")
            .expect("read the server's stdout");
        Exit { status, elapsed, stdout_rest }
    }

    /// Stops the server with SIGTERM, checks that it exited cleanly, and starts it again with
    /// the same arguments on the same database file. The new process listens on a new port.
    pub async fn restart(&mut self) {
        let exit = self.stop("TERM").await;
        assert!(
            exit.status.success(),
            "the server exited with {}; log:\n{}",
            exit.status,
            self.log()
        );
        self.start_again().await;
    }

    /// Starts the server again after [`Server::stop`], with the same arguments on the same
    /// database file. The new process listens on a new port.
    pub async fn start_again(&mut self) {
        let (child, stdout, (scheme, addr)) =
            spawn(&self.args, &self.env, &self.data_path, &self.log_path).await;
        self.child = child;
        self.stdout = stdout;
        self.addr = addr;
        self.scheme = scheme;
    }
}

/// Finds the server binary: `BROKER_SERVER_BIN`, or `broker-server` in the target directory this
/// test binary was built into (`target/debug/deps/e2e-…` → `target/debug/broker-server`).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BROKER_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary is in a directory");
    let profile = deps.parent().expect("the deps directory is in the profile directory");
    let path = profile.join(format!("broker-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build -p broker-server` first (or set BROKER_SERVER_BIN)",
        path.display()
    );
    path
}

async fn spawn(
    args: &[String],
    env: &[(String, String)],
    data_path: &Path,
    log_path: &Path,
) -> (Child, Lines<BufReader<ChildStdout>>, (String, SocketAddr)) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open the server's log file");
    let mut command = Command::new(binary());
    command
        .args(["--port", "0", "--bind", "127.0.0.1", "--data"])
        .arg(data_path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    let inherited = std::env::vars_os().map(|(key, _)| key);
    for key in inherited.filter(|key| key.to_string_lossy().starts_with("BROKER_")) {
        command.env_remove(key);
    }
    for key in SERVER_ENV {
        command.env_remove(key);
    }
    command.envs(env.iter().map(|(key, value)| (key, value)));
    let mut child = command.spawn().expect("start broker-server");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let line = tokio::time::timeout(START_TIMEOUT, stdout.next_line()).await;
    let log = || std::fs::read_to_string(log_path).unwrap_or_default();
    let line = match line {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => {
            let status = child.wait().await.expect("wait for the server");
            panic!("broker-server exited with {status} before listening; log:\n{}", log())
        }
        Ok(Err(error)) => panic!("reading broker-server's stdout failed: {error}"),
        Err(_) => panic!("broker-server did not listen within {START_TIMEOUT:?}; log:\n{}", log()),
    };
    let (scheme, addr): (String, SocketAddr) = line
        .strip_prefix(LISTENING)
        .and_then(|url| url.split_once("://"))
        .filter(|(scheme, _)| ["http", "https"].contains(scheme))
        .and_then(|(scheme, addr)| Some((scheme.to_string(), addr.parse().ok()?)))
        .unwrap_or_else(|| {
            panic!("the first line on stdout is {line:?}, not {LISTENING}http(s)://IP:PORT")
        });
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "the server listens where --bind says");
    assert_ne!(addr.port(), 0, "the listening line names the port actually bound");
    (child, stdout, (scheme, addr))
}
