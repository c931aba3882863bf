//! The broker server: the storage (a redb file, or a NATS JetStream stream shared with other
//! brokers), the engine and the HTTP transport, wired together.
//!
//! The `broker-server` binary is a thin `main` over this library. Programs that start the server
//! from their own `main` use [`broker_run`] (the one-line start) or [`Server`] (full control over
//! configuration and shutdown). The binary runs them on a runtime of
//! [`default_worker_threads`] workers (or `--threads`); such a program sizes its own runtime.
//!
//! # Layout
//!
//! - `args.rs`: [`Args`], the command line and environment, validated into a [`Config`].
//! - `auth.rs`: token flags, and the `token` subcommand that mints tokens.
//! - `check.rs`: the `check` subcommand ([`CheckArgs`]), which verifies a database file and
//!   gives a [`Verdict`].
//! - `backup.rs`: the `backup` subcommand ([`BackupArgs`]), which downloads a running server's
//!   copy of its database.
//! - `nats.rs`: the `--nats` flags ([`NatsArgs`]), for a database in a NATS JetStream stream.
//! - `retain.rs`: `--retain PATTERN=RULE` ([`Retain`]), the retention rules.
//! - `tls.rs`: `--tls-cert`, `--tls-key` and `--hsts` ([`TlsArgs`]), HTTPS.
//! - `server.rs`: [`Server`]: open the database, bind, serve (`GET /backup` included), reload
//!   the certificate on SIGHUP, shut down.
//!
//! # Example
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> Result<(), broker_server::Error> {
//!     // Allows any origin; reads PORT from the environment.
//!     broker_server::broker_run("*").await
//! }
//! ```

mod args;
mod auth;
mod backup;
mod check;
mod limits;
mod nats;
mod retain;
mod server;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use args::{Args, Command, LogFormat, default_worker_threads};
pub use auth::{AccessArgs, AuthArgs, TokenArgs};
pub use backup::{BackupArgs, Saved};
pub use check::{CheckArgs, Verdict};
pub use nats::NatsArgs;
pub use retain::Retain;
pub use server::{Server, shutdown_signal};
pub use tls::TlsArgs;

/// Where the server listens unless told otherwise: loopback only, port 8080.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// Where the database lives when no path is given: the user's data directory.
pub(crate) fn default_data_path() -> Result<PathBuf, Error> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|dir| !dir.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/share"),
            None => {
                return Err(Error::Config(
                    "no data directory: set --data (or BROKER_DATA), XDG_DATA_HOME or HOME".into(),
                ));
            }
        },
    };
    Ok(base.join("broker").join("broker.redb"))
}

/// Everything the server needs to run; build it with [`Config::new`] or from [`Args`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The address to listen on. Default: [`DEFAULT_LISTEN`].
    pub listen: SocketAddr,
    /// The redb database file; unused when `nats` is set.
    pub data: PathBuf,
    /// Settings of the redb database.
    pub storage: broker_storage_redb::RedbOptions,
    /// The NATS JetStream stream that holds the database instead of the file, when set.
    /// Default: `None`.
    pub nats: Option<broker_storage_nats::NatsOptions>,
    /// Settings of the engine.
    pub engine: broker_core::Config,
    /// Settings of the HTTP transport.
    pub http: broker_http::HttpConfig,
    /// The certificate to serve HTTPS with, instead of plain HTTP; the server reloads it on
    /// SIGHUP and whenever its files change. Default: `None`.
    pub tls: Option<broker_http::Tls>,
    /// How many files the process may open, when known: the server warns at start-up when
    /// the connection limits exceed it. Default: `None`.
    pub open_files: Option<usize>,
}

impl Config {
    /// The defaults, storing into the redb file at `data`.
    pub fn new(data: impl Into<PathBuf>) -> Config {
        Config {
            listen: DEFAULT_LISTEN,
            data: data.into(),
            storage: broker_storage_redb::RedbOptions::default(),
            nats: None,
            engine: broker_core::Config::default(),
            http: broker_http::HttpConfig::default(),
            tls: None,
            open_files: None,
        }
    }
}

/// Why the server could not start or stop cleanly.
///
/// A variant's message does not repeat its cause, which is its [`source`](std::error::Error::source):
/// print the whole chain with `{:#}` (anyhow) to read each cause once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid; the message says which and how to fix it.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be opened or closed. The storage's messages name the file, so
    /// this one does not repeat it.
    #[error("the database")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: broker_storage::StorageError,
    },
    /// The database file is open in another process: another broker serves it. redb locks the
    /// file, so a database is served by one process at a time. (A program that embeds [`Server`]
    /// gets this too for a file another `Server` of its own holds.)
    #[error(
        "another process serves {}; a database file is served by one broker at a time",
        .0.display()
    )]
    InUse(PathBuf),
    /// The NATS stream could not be reached, created or used; the message says what to change.
    #[error("the NATS stream {stream}")]
    Nats {
        /// The stream's name.
        stream: String,
        /// What went wrong.
        #[source]
        source: broker_storage::StorageError,
    },
    /// The engine failed to open or close.
    #[error(transparent)]
    Engine(#[from] broker_core::Error),
    /// The TLS certificate or key could not be loaded; the cause names the file and why.
    #[error("cannot load the TLS certificate")]
    Tls(#[source] broker_http::TlsError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Queued inserts were not all committed within the shutdown deadline.
    #[error("shutdown did not finish within {0:?}")]
    ShutdownTimeout(Duration),
    /// `broker-server backup` could not save the copy; the message says why, and no file was
    /// left under the name asked for.
    #[error("cannot back up to {}: {reason}", .to.display())]
    Backup {
        /// The file the copy was to be saved to.
        to: PathBuf,
        /// Why it was not.
        reason: String,
    },
}

impl Error {
    /// The failure of the database behind this error, if that is what it is: opening or
    /// closing the file, or the engine's reading or writing it.
    pub fn storage(&self) -> Option<&broker_storage::StorageError> {
        match self {
            Error::Storage { source, .. } | Error::Nats { source, .. } => Some(source),
            Error::Engine(broker_core::Error::Storage(source)) => Some(source),
            _ => None,
        }
    }
}

/// Runs the broker until SIGINT or SIGTERM, allowing CORS requests from `origin` (`*` for any, or
/// a comma-separated list of origins) and listening on the port in the `PORT` environment
/// variable (default 8080). Every other setting comes from the environment variables that
/// `broker-server --help` lists, or their defaults.
pub async fn broker_run(origin: &str) -> Result<(), Error> {
    use clap::Parser;
    let args = Args::try_parse_from(["broker-server", "--allow-origin", origin])
        .map_err(|error| Error::Config(error.to_string()))?;
    let server = Server::bind(args.into_config()?).await?;
    server.run(shutdown_signal()).await
}
