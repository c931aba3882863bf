//! [`Server`]: open the database, bind, serve, and shut down in order.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use broker_core::Broker;
use broker_http::{App, Backup, Tls};
use broker_storage_nats::{NatsOptions, NatsStorage};
use broker_storage_redb::RedbStorage;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::{TcpListener, TcpSocket};

use crate::check::in_use;
use crate::{Config, Error};

/// A server with its database open and its address bound, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    app: App,
    config: Config,
    /// The recorder behind `GET /metrics`, kept for its upkeep.
    prometheus: Option<PrometheusHandle>,
    /// SIGHUP, listened for from `bind` on when the server serves HTTPS, so that a SIGHUP sent
    /// as soon as the server says it listens reloads the certificate rather than ending the
    /// process, as it would by default.
    hangup: Option<Hangup>,
}

impl Server {
    /// Opens the database and the engine, and binds the listening address.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        let (broker, backup) = match &config.nats {
            Some(options) => open_nats(&config, options).await?,
            None => open_redb(&config).await?,
        };
        // Installed by `open_*` before the engine registered its metrics; the same handle.
        let prometheus = prometheus();
        let listener = match listen(config.listen) {
            Ok(listener) => listener,
            Err(source) => {
                // Release the database before reporting, so that a retry can open it.
                broker.close().await?;
                return Err(Error::Bind { addr: config.listen, source });
            }
        };
        let app = match prometheus.clone() {
            Some(handle) => App::with_metrics(broker, config.http.clone(), move || handle.render()),
            None => App::new(broker, config.http.clone()),
        };
        let mut app = app.with_backup(backup);
        let mut hangup = None;
        if let Some(tls) = &config.tls {
            app = app.with_tls(tls.clone());
            hangup = Hangup::listen();
        }
        Ok(Server { listener, app, config, prometheus, hangup })
    }

    /// `https` when the server serves HTTPS, `http` otherwise.
    pub fn scheme(&self) -> &'static str {
        if self.config.tls.is_some() { "https" } else { "http" }
    }

    /// The address the server listens on; with port 0, the port the system picked.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The engine, for programs that also insert or subscribe from Rust.
    pub fn broker(&self) -> &Broker {
        self.app.broker()
    }

    /// Serves until `shutdown` completes, then stops accepting, ends the event streams, waits
    /// for requests in flight, commits every queued insert and closes the database.
    ///
    /// Connections get the configured shutdown deadline to finish; the engine and database get
    /// the same again to commit what was queued.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let scheme = self.scheme();
        let Server { listener, app, config, prometheus, hangup } = self;
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        match &config.nats {
            Some(nats) => {
                let stream = &nats.stream;
                tracing::info!(addr = %config.listen, scheme, stream, workers, "serving");
            }
            None => {
                let data = config.data.display();
                tracing::info!(addr = %config.listen, scheme, %data, workers, "serving");
            }
        }
        warn_over_open_files(&config);
        if config.http.auth.is_none() {
            tracing::warn!(
                "no token key configured: anyone who can reach {} may insert and read every event",
                config.listen
            );
        }
        let upkeep = prometheus.map(|prometheus| tokio::spawn(upkeep(prometheus)));
        let reload = match (hangup, &config.tls) {
            (Some(hangup), Some(tls)) => Some(tokio::spawn(hangup.reload(tls.clone()))),
            _ => None,
        };
        broker_http::serve(listener, app.clone(), shutdown).await;
        for task in [upkeep, reload].into_iter().flatten() {
            task.abort();
        }
        let deadline = config.http.shutdown_timeout;
        match tokio::time::timeout(deadline, app.broker().close()).await {
            Ok(result) => result?,
            Err(_) => return Err(Error::ShutdownTimeout(deadline)),
        }
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// Opens the redb file and the engine over it, and the `GET /backup` that copies the file.
async fn open_redb(config: &Config) -> Result<(Broker, Backup), Error> {
    let storage =
        RedbStorage::open_with(&config.data, config.storage.clone()).await.map_err(|source| {
            if in_use(&source) {
                Error::InUse(config.data.clone())
            } else {
                Error::Storage { path: config.data.clone(), source }
            }
        })?;
    // Shared: the engine owns the store, and `GET /backup` calls its own `backup` method.
    let storage = Arc::new(storage);
    // The recorder must exist before the engine and the transport register their metrics.
    prometheus();
    let broker = Broker::open(Arc::clone(&storage), config.engine.clone()).await?;
    Ok((broker, backup(storage, &config.data)))
}

/// Connects to the NATS stream and opens the engine over it.
///
/// The engine's commit batches are kept within what the stream stores atomically, so that a
/// batch is never split; `GET /backup` answers that the copy is for the NATS tools to make.
async fn open_nats(config: &Config, options: &NatsOptions) -> Result<(Broker, Backup), Error> {
    let stream = options.stream.clone();
    let storage = NatsStorage::connect(options.clone())
        .await
        .map_err(|source| Error::Nats { stream: stream.clone(), source })?;
    let mut engine = config.engine.clone();
    engine.max_batch = engine.max_batch.min(NatsStorage::MAX_ATOMIC_BATCH);
    prometheus();
    let broker = Broker::open(storage, engine).await?;
    let backup = Backup::new(std::env::temp_dir(), move |_| {
        let reason = format!(
            "this broker keeps its database in the NATS stream {stream}, which GET /backup does \
             not copy: back the stream up with the NATS tools, such as \
             `nats stream backup {stream} DIR`"
        );
        async move { Err(reason) }
    });
    Ok((broker, backup))
}

/// How `GET /backup` copies `storage`: into scratch files beside the database at `data`, on the
/// same file system, whose free space the store already watches.
fn backup(storage: Arc<RedbStorage>, data: &Path) -> Backup {
    let dir = match data.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Backup::new(dir, move |to: PathBuf| {
        let storage = Arc::clone(&storage);
        async move {
            let report = storage.backup(&to).await.map_err(|error| error.to_string())?;
            tracing::info!(versions = report.versions, last_id = report.last_id, "backup written");
            Ok(())
        }
    })
}

/// Logs the connection limits, and warns when they exceed what the process can open: the
/// connections past that are neither served nor refused, only left waiting in the kernel.
fn warn_over_open_files(config: &Config) {
    let http = &config.http;
    let (connections, subscribers) = (http.max_connections, http.max_subscribers);
    tracing::info!(
        max_connections = connections,
        max_subscribers = subscribers,
        open_files = config.open_files,
        "connection limits"
    );
    let Some(open_files) = config.open_files else { return };
    let usable = open_files.saturating_sub(broker_http::FILE_RESERVE);
    if connections > usable {
        tracing::warn!(
            "--max-connections {connections} exceeds the {usable} connections this process can \
             open (open-file limit {open_files}, less {} for the database and listener): clients \
             past {usable} will wait unanswered instead of getting 503; lower --max-connections \
             or raise the limit (ulimit -n)",
            broker_http::FILE_RESERVE
        );
    }
    if subscribers >= connections {
        tracing::warn!(
            "--max-subscribers {subscribers} leaves no connection for inserts and health checks \
             beside a full house of subscribers; keep it below --max-connections {connections}"
        );
    }
}

/// How many connections the kernel queues for the accept loop. The system's usual default (128)
/// overflows when many subscribers connect at once, say after a restart, and each overflowed
/// connection then waits a second or more for its SYN to be retried.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with a backlog of [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restarted server can bind again while connections of the previous one linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Bucket bounds of the latency histograms, in seconds.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Bucket bounds of the commit batch size histogram, up to the most one commit takes.
const BATCH_BUCKETS: &[f64] =
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

/// The process's Prometheus recorder, installed on first use.
///
/// `None` when the embedding program installed a recorder of its own: the server then has no
/// `/metrics` route, and the metrics go to that recorder.
fn prometheus() -> Option<PrometheusHandle> {
    static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    PROMETHEUS
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(broker_core::metrics::COMMIT_BATCH_SIZE.into()),
                        BATCH_BUCKETS,
                    )
                })
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed; /metrics is off");
                    None
                }
            }
        })
        .clone()
}

/// Drains the recorder's histogram samples now and then, so that their memory stays bounded
/// between scrapes.
async fn upkeep(prometheus: PrometheusHandle) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        ticks.tick().await;
        prometheus.run_upkeep();
    }
}

/// SIGHUP, which reloads the TLS certificate and key from their files.
struct Hangup {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangup {
    /// Listens for SIGHUP from now on; `None` (logged) where it cannot be listened for.
    fn listen() -> Option<Hangup> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(signal) => Some(Hangup { signal }),
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGHUP: the certificate is \
                        reloaded only when its files change");
                    None
                }
            }
        }
        #[cfg(not(unix))]
        None
    }

    /// Reloads `tls` on every SIGHUP; never ends. A reload that fails is logged, and the
    /// certificate served so far stays.
    async fn reload(self, tls: Tls) {
        #[cfg(unix)]
        {
            let mut signal = self.signal;
            while signal.recv().await.is_some() {
                if !tls.reload_and_log("SIGHUP").await {
                    return;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = (self, tls);
    }
}

/// A future that completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
///
/// The handlers are installed when this is called, not when the future is first polled: call it
/// before announcing that the server is up, so that a signal sent right after the announcement
/// shuts the server down cleanly instead of killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    };
    async move {
        #[cfg(unix)]
        {
            let (mut interrupt, mut terminate) = match (interrupt, terminate) {
                (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "cannot listen for SIGINT and SIGTERM");
                    return std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "cannot listen for Ctrl-C");
                return std::future::pending::<()>().await;
            }
            tracing::info!("SIGINT received");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::shutdown_signal;

    /// A SIGTERM that comes after `shutdown_signal` is called but before its future is first
    /// polled, as one sent right after the server announces its address does, completes it
    /// instead of killing the process.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_sigterm_before_the_first_poll_completes_the_shutdown() {
        use nix::sys::signal::{Signal, raise};
        let shutdown = shutdown_signal();
        raise(Signal::SIGTERM).expect("raise SIGTERM");
        let stopped = tokio::time::timeout(Duration::from_secs(5), shutdown).await;
        stopped.expect("the shutdown completes");
    }
}
