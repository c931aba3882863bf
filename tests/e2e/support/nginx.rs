//! [`Nginx`]: nginx in front of broker nodes, configured with the block that `docs/SCALING.md`
//! documents, so that the documented configuration is the one the tests run.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `nginx-light` puts the binary (`cargo xtask setup` installs it).
const NGINX: &str = "/usr/sbin/nginx";

/// How long nginx may take to listen, and to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running nginx, stopped by its process id when dropped.
pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    error_log: PathBuf,
    /// Holds the configuration, the log and nginx's scratch directories.
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx on a free port of 127.0.0.1 with the documented block, its `upstream`
    /// pointing at `nodes`, and waits until it accepts connections.
    pub fn start(nodes: [SocketAddr; 2]) -> Nginx {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        // nginx runs its workers as `nobody` when started by root: they must reach the scratch
        // directories.
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(dir.path(), mode).expect("open the directory to the workers");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let block = documented_block(addr, nodes);
        let path = |name: &str| dir.path().join(name).display().to_string();
        let config = format!(
            "pid {pid};\nerror_log {log} info;\nworker_processes 1;\nevents {{}}\nhttp {{\n\
             access_log off;\nclient_body_temp_path {body};\nproxy_temp_path {proxy};\n\
             fastcgi_temp_path {fastcgi};\nuwsgi_temp_path {uwsgi};\nscgi_temp_path {scgi};\n\
             {block}\n}}\n",
            pid = path("nginx.pid"),
            log = path("error.log"),
            body = path("body"),
            proxy = path("proxy"),
            fastcgi = path("fastcgi"),
            uwsgi = path("uwsgi"),
            scgi = path("scgi"),
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("write nginx.conf");
        let error_log = dir.path().join("error.log");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("a log file"))
            .spawn()
            .unwrap_or_else(|error| panic!("start {NGINX} (run `cargo xtask setup`): {error}"));
        let mut nginx = Nginx { child, addr, error_log, _dir: dir };
        nginx.wait_listening();
        nginx
    }

    /// The address nginx listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What nginx has logged so far, for failure messages.
    pub fn log(&self) -> String {
        let stderr = std::fs::read_to_string(self._dir.path().join("stderr.log"));
        let error_log = std::fs::read_to_string(&self.error_log);
        format!("{}{}", stderr.unwrap_or_default(), error_log.unwrap_or_default())
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        while TcpStream::connect(self.addr).is_err() {
            if let Some(status) = self.child.try_wait().expect("query nginx") {
                panic!("nginx exited with {status}; log:\n{}", self.log());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "nginx did not listen within {START_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers; SIGKILL if it does not exit in time.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && started.elapsed() < EXIT_TIMEOUT {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ```nginx block of `docs/SCALING.md` with its `listen` port and the two `server` lines
/// of its upstream replaced by `addr` and `nodes`; panics if the block no longer has them.
fn documented_block(addr: SocketAddr, nodes: [SocketAddr; 2]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SCALING.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let (_, rest) = doc.split_once("```nginx\n").expect("SCALING.md has an nginx block");
    let (block, _) = rest.split_once("\n```").expect("the nginx block ends");
    let mut listens = 0;
    let mut servers = nodes.iter();
    let mut lines = Vec::new();
    for line in block.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let words: Vec<&str> = line.split_whitespace().collect();
        let line = match words.as_slice() {
            ["listen", _] => {
                listens += 1;
                format!("{indent}listen {addr};")
            }
            ["server", upstream, params @ ..] if upstream.contains(':') => {
                let node = servers.next().expect("two server lines in the upstream");
                format!("{indent}server {node} {}", params.join(" "))
            }
            _ => line.to_string(),
        };
        lines.push(line);
    }
    assert_eq!(listens, 1, "the documented block listens once: {block}");
    assert!(servers.next().is_none(), "the documented upstream has two servers: {block}");
    lines.join("\n")
}
