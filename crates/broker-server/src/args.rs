//! Command-line flags and environment variables, and their validation into a [`Config`].
//!
//! [`Args`] is the raw input as clap parses it; [`Args::into_config`] checks it and resolves the
//! defaults that depend on the environment, so that a [`Config`] is always one the server can run.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;

use broker_http::{AllowOrigin, HttpConfig};
use broker_storage_redb::RedbOptions;
use bytesize::ByteSize;
use clap::Parser;
use humantime::Duration;

use crate::auth::{AccessArgs, AuthArgs, TokenArgs};
use crate::backup::BackupArgs;
use crate::check::CheckArgs;
use crate::limits;
use crate::nats::NatsArgs;
use crate::retain::Retain;
use crate::tls::TlsArgs;
use crate::{Config, Error};

/// The transport's defaults, the one source of every default below that the transport owns.
fn http() -> HttpConfig {
    HttpConfig::default()
}

/// The engine's defaults, the one source of the engine defaults below.
fn engine() -> broker_core::Config {
    broker_core::Config::default()
}

/// The database's defaults, the one source of the storage defaults below.
fn storage() -> RedbOptions {
    RedbOptions::default()
}

/// The default of `--threads`: one worker thread fewer than the CPUs the process may use, and at
/// least one.
///
/// The engine's writer thread and the kernel's network work need CPU beside the workers. With a
/// worker on every CPU they take turns at the CPUs, and every turn delays the answers that wait
/// on it: on 2 CPUs, 1 worker serves more inserts than 2, with less CPU per insert
/// (`docs/BENCHMARKS.md`, "One worker thread fewer than the CPUs").
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cpus| cpus.get().saturating_sub(1).max(1))
}

/// A real-time message broker over Server-Sent Events.
///
/// POST /insert stores a new version of an event and publishes it; GET /events streams the latest
/// version of every event, then every new version; GET /audit/{event} lists an event's history.
/// Every flag can also be set with the environment variable shown beside it.
///
/// `broker-server backup --to FILE` copies a running broker's database; `broker-server check`
/// verifies a database file that no broker is using. To restore a backup, start the server on
/// it: `broker-server --data FILE` (or on a copy of it, to keep the backup as it is).
#[derive(Debug, Clone, Parser)]
#[command(name = "broker-server", version, args_override_self = true)]
pub struct Args {
    /// IP address to listen on; 0.0.0.0 accepts connections from other machines.
    #[arg(long, env = "BROKER_BIND", default_value_t = crate::DEFAULT_LISTEN.ip())]
    pub bind: IpAddr,

    /// TCP port to listen on; 0 picks a free port.
    #[arg(long, env = "PORT", default_value_t = crate::DEFAULT_LISTEN.port())]
    pub port: u16,

    /// The redb database file, created if missing; to restore a backup, point it at the
    /// backup. Unused with --nats. [default: $XDG_DATA_HOME/broker/broker.redb, or ~/.local/share/broker/broker.redb]
    #[arg(long, env = "BROKER_DATA")]
    pub data: Option<PathBuf>,

    /// Inserts are refused with 507 while the file system holding the database has less free
    /// space than this, such as `16MiB` or `1GB`; 0 turns the check off. Stopping short of a
    /// full disk costs nothing; running into one costs a reopen of the database.
    #[arg(long, env = "BROKER_MIN_FREE_SPACE", default_value_t = ByteSize(storage().min_free_space))]
    pub min_free_space: ByteSize,

    /// How long a version's `Idempotency-Key` is remembered, such as `2m` or `1h`: a retry with
    /// the same key within it returns that version instead of storing another. With --nats, the
    /// stream's duplicate window, at least 12 s.
    #[arg(long, env = "BROKER_IDEMPOTENCY_WINDOW", default_value_t = storage().idempotency_window.into())]
    pub idempotency_window: humantime::Duration,

    /// How much history the events a pattern matches keep, as PATTERN=RULE, where RULE is a
    /// count of versions (`100`), an age (`30d`), or both (`100,30d`: either bound prunes).
    /// Repeat it for several rules (in the environment, separate them with spaces); the first
    /// that matches an event governs it, and an event none matches keeps everything. The
    /// latest version of every event is always kept, and so is every version younger than
    /// --idempotency-window. Pruning runs in the background.
    #[arg(
        long = "retain",
        env = "BROKER_RETAIN",
        value_name = "PATTERN=RULE",
        value_delimiter = ' '
    )]
    pub retain: Vec<Retain>,

    /// The most memory the versions not yet read by every live subscriber may hold, such as
    /// `64MiB`; a subscriber further behind catches up from the latest version of each event.
    #[arg(long, env = "BROKER_LIVE_BYTES", default_value_t = ByteSize(engine().live_bytes as u64))]
    pub live_bytes: ByteSize,

    /// Threads that serve connections [default: one fewer than the CPUs the process may use,
    /// and at least 1]. Each commit is made durable on a thread of its own, and the kernel's
    /// network work takes CPU too: a worker thread for every CPU besides them makes the threads
    /// wait for each other's CPUs.
    #[arg(long, env = "BROKER_THREADS")]
    pub threads: Option<NonZeroUsize>,

    /// The database's page cache, such as `64MiB`: memory that speeds up reads of a large
    /// history.
    #[arg(long, env = "BROKER_CACHE_SIZE", default_value_t = ByteSize(storage().cache_size as u64))]
    pub cache_size: ByteSize,

    /// Origins browsers may call from: `*` for any, or a comma-separated list such as
    /// `https://app.example,https://admin.example`.
    #[arg(long, env = "BROKER_ALLOW_ORIGIN", default_value_t = http().allow_origin)]
    pub allow_origin: AllowOrigin,

    /// How often an idle event stream gets a heartbeat comment, such as `15s` or `500ms`.
    #[arg(long, env = "BROKER_HEARTBEAT", default_value_t = http().heartbeat.into())]
    pub heartbeat: Duration,

    /// The reconnection delay event stream clients are told to wait (`retry:`).
    #[arg(long, env = "BROKER_RETRY", default_value_t = http().retry.into())]
    pub retry: Duration,

    /// The largest request body accepted, in bytes.
    #[arg(long, env = "BROKER_MAX_BODY", default_value_t = http().max_body)]
    pub max_body: usize,

    /// The most versions one insert of an array may hold; more are answered 413. Capped by
    /// the most versions one commit stores (1000 with --nats).
    #[arg(long, env = "BROKER_MAX_BULK", default_value_t = http().max_bulk)]
    pub max_bulk: usize,

    /// The longest event name accepted, in bytes.
    #[arg(long, env = "BROKER_MAX_EVENT_NAME", default_value_t = broker_core::DEFAULT_MAX_EVENT_NAME_LEN)]
    pub max_event_name: usize,

    /// The most connections served at once, event streams included; more are answered 503
    /// with Retry-After. [default: the open-file limit, raised to its hard limit at start-up,
    /// less 64 kept for the database, the listener and logs]
    #[arg(long, env = "BROKER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// The most event streams served at once; more are answered 503 with Retry-After. Kept
    /// below --max-connections, so that subscribers never lock out inserts, audits and health
    /// checks. [default: nine in ten of --max-connections]
    #[arg(long, env = "BROKER_MAX_SUBSCRIBERS")]
    pub max_subscribers: Option<usize>,

    /// How long a client may take to send its request headers.
    #[arg(long, env = "BROKER_HEADER_TIMEOUT", default_value_t = http().header_read_timeout.into())]
    pub header_timeout: Duration,

    /// How long a client may take to send a request body once its headers are in; one that
    /// takes longer gets 408 and is disconnected.
    #[arg(long, env = "BROKER_BODY_TIMEOUT", default_value_t = http().body_timeout.into())]
    pub body_timeout: Duration,

    /// How long a client may read nothing while data waits for it before it is disconnected;
    /// an event stream client then reconnects and resumes.
    #[arg(long, env = "BROKER_WRITE_TIMEOUT", default_value_t = http().write_timeout.into())]
    pub write_timeout: Duration,

    /// The most streams one HTTP/2 connection may have open at once; a stream beyond it is
    /// refused (REFUSED_STREAM) while the others go on.
    #[arg(long, env = "BROKER_H2_MAX_STREAMS", default_value_t = http().h2_max_concurrent_streams)]
    pub h2_max_streams: u32,

    /// Serve the live demo page at `/`: a form shared between every open window.
    #[arg(long, env = "BROKER_DEMO")]
    pub demo: bool,

    /// Log line format: `text` for people, `json` for log collectors. The level comes from
    /// RUST_LOG (default `info`).
    #[arg(long, env = "BROKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The NATS JetStream database, instead of the --data file.
    #[command(flatten)]
    pub nats: NatsArgs,

    /// Token verification.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// What tokens are needed for.
    #[command(flatten)]
    pub access: AccessArgs,

    /// HTTPS.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// What to do; without a subcommand, serve.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// How long to go on serving after SIGTERM or SIGINT, with /readyz answering 503, so that a
    /// load balancer moves new clients elsewhere before the server stops accepting.
    #[arg(long, env = "BROKER_DRAIN_DELAY", default_value_t = http().drain_delay.into())]
    pub drain_delay: Duration,

    /// How long shutdown waits for open connections and queued inserts before it gives up.
    #[arg(long, env = "BROKER_SHUTDOWN_TIMEOUT", default_value_t = http().shutdown_timeout.into())]
    pub shutdown_timeout: Duration,
}

/// The subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print a signed token for the given scopes, made with the configured key.
    Token(TokenArgs),
    /// Verify a database file that no broker is using, and print what it holds.
    ///
    /// Reads the whole file: redb's checksum of every page, then every version and index, which
    /// must agree. Prints one line and exits 0 when the file is clean; prints the problem and
    /// exits 1 when it is damaged (restore a backup then); exits 2 when it cannot be checked at
    /// all, such as when a running broker holds it (check a copy made with `broker-server backup`
    /// instead).
    ///
    /// The file is checked in place and opened as the server opens it, so it is not strictly
    /// left alone: a file that was not closed cleanly is recovered first, as at start-up, and
    /// damage redb can repair may roll the last commit back (the report then says so, and the
    /// exit status is 1). To leave a file untouched, check a copy of it.
    Check(CheckArgs),
    /// Copy the database of a running broker into a new file.
    ///
    /// Asks the broker at --url for `GET /backup`, a consistent copy taken while it keeps
    /// serving, and saves it to FILE: first as FILE.partial, synced to disk, then renamed. Never
    /// overwrites FILE. With authorization on, the token needs the audit pattern `*`. To
    /// restore, start the server on the copy: `broker-server --data FILE`.
    Backup(BackupArgs),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

impl Args {
    /// The worker threads of the runtime that serves: `--threads`, or its default.
    pub fn worker_threads(&self) -> usize {
        self.threads.map_or_else(default_worker_threads, NonZeroUsize::get)
    }

    /// Checks every setting and resolves the defaults; the error says what is wrong and how to
    /// set it right.
    pub fn into_config(self) -> Result<Config, Error> {
        // Taken apart whole, so that a flag added to `Args` and not used here does not compile.
        let Args {
            bind,
            port,
            data,
            min_free_space,
            idempotency_window,
            retain,
            live_bytes,
            // Read by `main` through `worker_threads`, before the runtime starts.
            threads: _,
            cache_size,
            allow_origin,
            heartbeat,
            retry,
            max_body,
            max_bulk,
            max_event_name,
            max_connections,
            max_subscribers,
            header_timeout,
            body_timeout,
            write_timeout,
            h2_max_streams,
            demo,
            log_format: _,
            nats,
            auth,
            access,
            tls,
            command: _,
            drain_delay,
            shutdown_timeout,
        } = self;
        let invalid = |message: String| Err(Error::Config(message));
        if heartbeat.is_zero() {
            return invalid("--heartbeat must be longer than 0, such as `15s`".into());
        }
        if max_body == 0 {
            return invalid("--max-body must be at least 1 byte".into());
        }
        if max_bulk == 0 {
            return invalid("--max-bulk must be at least 1 version".into());
        }
        if max_event_name == 0 {
            return invalid("--max-event-name must be at least 1 byte".into());
        }
        if write_timeout.is_zero() {
            return invalid("--write-timeout must be longer than 0, such as `30s`".into());
        }
        if max_connections == Some(0) || max_subscribers == Some(0) {
            return invalid("--max-connections and --max-subscribers must be at least 1".into());
        }
        if h2_max_streams == 0 {
            return invalid("--h2-max-streams must be at least 1".into());
        }
        if body_timeout.is_zero() {
            return invalid("--body-timeout must be longer than 0, such as `10s`".into());
        }
        let idempotency_window = idempotency_window.into();
        if idempotency_window == std::time::Duration::ZERO {
            return invalid("--idempotency-window must be longer than 0, such as `2m`".into());
        }
        let mut nats = nats.into_options()?;
        if let Some(nats) = &mut nats {
            nats.duplicate_window = idempotency_window;
            // Retention purges the stream, which a stream must allow from its creation.
            nats.prune = !retain.is_empty();
        }
        let data = match (data, &nats) {
            (Some(data), _) => data,
            // No file is opened: the database is the stream.
            (None, Some(_)) => PathBuf::new(),
            (None, None) => crate::default_data_path()?,
        };
        let https = tls.load()?;
        let mut config = Config::new(data);
        config.nats = nats;
        config.tls = https.tls;
        config.listen = SocketAddr::new(bind, port);
        config.engine.max_event_name_len = max_event_name;
        config.engine.retention = retain.iter().map(Retain::to_rule).collect();
        config.engine.live_bytes = usize::try_from(live_bytes.as_u64()).unwrap_or(usize::MAX);
        config.storage.min_free_space = min_free_space.as_u64();
        config.storage.cache_size = usize::try_from(cache_size.as_u64()).unwrap_or(usize::MAX);
        config.storage.idempotency_window = idempotency_window;
        config.open_files = limits::raise_open_files();
        let open_files = config.open_files;
        let http = &mut config.http;
        http.allow_origin = allow_origin;
        http.auth = match auth.verifier()? {
            Some(_) if access.jwt_cookie.is_some() && http.allow_origin == AllowOrigin::Any => {
                return invalid(
                    "--jwt-cookie sends credentials, which browsers never allow for any \
                     origin: list the origins with --allow-origin, such as \
                     `https://app.example`"
                        .into(),
                );
            }
            Some(verifier) => Some(access.apply(verifier)),
            None if access.jwt_cookie.is_some() || !access.public_events.is_empty() => {
                return invalid(
                    "--jwt-cookie and --public-events need authorization: set \
                     BROKER_JWT_SECRET or --jwt-key-file"
                        .into(),
                );
            }
            None => None,
        };
        http.heartbeat = heartbeat.into();
        http.retry = retry.into();
        http.max_body = max_body;
        http.max_bulk = max_bulk;
        if let Some(open_files) = open_files {
            http.fit_open_files(open_files);
        }
        if let Some(connections) = max_connections {
            http.limit_connections(connections);
        }
        if let Some(subscribers) = max_subscribers {
            http.max_subscribers = subscribers;
        }
        http.header_read_timeout = header_timeout.into();
        http.body_timeout = body_timeout.into();
        http.h2_max_concurrent_streams = h2_max_streams;
        http.write_timeout = write_timeout.into();
        http.demo = demo;
        http.hsts = https.hsts;
        http.shutdown_timeout = shutdown_timeout.into();
        http.drain_delay = drain_delay.into();
        Ok(config)
    }
}
