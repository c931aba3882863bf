//! [`NatsStorage`]: the trait's implementation over one JetStream stream.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, ServerAddr};
use broker_storage::{
    Horizon, NewVersion, Pruned, Retention, Storage, StorageError, Tail, Uuid, Version,
};

use crate::options::{Credentials, NatsOptions};
use crate::shared::Shared;
use crate::{append, horizons, prune, reads, snapshot, stream, tail};

/// A store whose versions live in a NATS JetStream stream, shared by every broker that connects
/// to it.
///
/// Open it with [`NatsStorage::connect`]; see the crate documentation for how versions are laid
/// out and read.
pub struct NatsStorage {
    shared: Arc<Shared>,
    database_id: Uuid,
}

impl NatsStorage {
    /// The most versions [`append`](Storage::append) stores atomically: the server's limit on an
    /// atomic batch. A longer batch is stored in parts; see the crate documentation.
    pub const MAX_ATOMIC_BATCH: usize = append::MAX_BATCH;

    /// Connects to the servers of `options`, creates the stream if it is missing, and checks its
    /// settings; with [`NatsOptions::prune`], does the same for the horizons bucket.
    ///
    /// # Errors
    ///
    /// [`StorageError::Unavailable`] when no server can be reached or JetStream does not answer;
    /// [`StorageError::Backend`] for options that are not valid, credentials that cannot be
    /// read, and a stream whose settings could lose versions (the message says what to change).
    pub async fn connect(options: NatsOptions) -> Result<NatsStorage, StorageError> {
        validate(&options)?;
        let servers = options
            .servers
            .iter()
            .map(|server| {
                ServerAddr::from_str(server.trim()).map_err(|error| {
                    StorageError::backend(format!("invalid NATS server {server:?}: {error}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Nodes may start before their NATS servers, or with them: keep trying for a while.
        let deadline = tokio::time::Instant::now() + options.connect_timeout;
        let (client, opened) = loop {
            match open(&options, &servers).await {
                Ok(opened) => break opened,
                Err(StorageError::Unavailable(reason))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::info!(reason, "the NATS stream is not reachable yet; trying again");
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
                Err(error) => return Err(error),
            }
        };
        let stream::Opened { database_id, last, duplicate_window } = opened;
        tracing::info!(
            servers = ?options.servers,
            stream = options.stream,
            %database_id,
            last_id = last,
            prune = options.prune,
            "connected to the NATS stream"
        );
        let window = duplicate_window.max(options.duplicate_window);
        let shared = Shared::new(client, options, window, last);
        Ok(NatsStorage { shared: Arc::new(shared), database_id })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &NatsOptions {
        &self.shared.options
    }

    fn open(&self) -> Result<&Shared, StorageError> {
        if self.shared.closed.is_cancelled() { Err(StorageError::Closed) } else { Ok(&self.shared) }
    }
}

impl std::fmt::Debug for NatsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStorage")
            .field("stream", &self.shared.options.stream)
            .field("database_id", &self.database_id)
            .finish_non_exhaustive()
    }
}

/// The longest any operation may take: its retries, and the requests of a last attempt.
///
/// Each request already has its own timeout; this bound also covers the waits that have none,
/// such as handing a message to a client whose connection is down and whose buffer is full.
/// The pause between two attempts to reach the stream at start-up.
const CONNECT_RETRY: Duration = Duration::from_millis(500);

/// Connects to `servers` and opens the stream, and the horizons bucket when pruning is on.
async fn open(
    options: &NatsOptions,
    servers: &[ServerAddr],
) -> Result<(async_nats::Client, stream::Opened), StorageError> {
    let connect = connect_options(options).await?;
    let client = tokio::time::timeout(options.request_timeout * 2, connect.connect(servers))
        .await
        .map_err(|_| unreachable(options, &"no answer in time"))?
        .map_err(|error| {
            use async_nats::ConnectErrorKind::{Authentication, AuthorizationViolation, Tls};
            match error.kind() {
                // Refused credentials or certificates are not cured by waiting.
                Authentication | AuthorizationViolation | Tls => StorageError::backend(format!(
                    "the NATS servers {} refused the connection: {error}",
                    options.servers.join(",")
                )),
                _ => unreachable(options, &error),
            }
        })?;
    let opened = bounded(options, stream::open(&client, options))
        .await
        .unwrap_or_else(|| Err(unreachable(options, &"no answer in time")))?;
    if options.prune {
        bounded(options, horizons::open(&client, options))
            .await
            .unwrap_or_else(|| Err(unreachable(options, &"no answer in time")))?;
    }
    Ok((client, opened))
}

fn limit(options: &NatsOptions) -> Duration {
    options.retry_timeout + options.request_timeout * 2
}

/// Runs `operation` for at most [`limit`]; `None` when it took longer.
async fn bounded<T>(options: &NatsOptions, operation: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit(options), operation).await.ok()
}

/// [`bounded`] for a read, which changes nothing and may fail as unavailable; and for a prune,
/// whose failure the horizon covers.
async fn read_bounded<T>(
    shared: &Shared,
    what: &str,
    read: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    bounded(&shared.options, read).await.unwrap_or_else(|| {
        Err(StorageError::Unavailable(format!(
            "{what} did not finish within {:?}",
            limit(&shared.options)
        )))
    })
}

fn unreachable(options: &NatsOptions, error: &dyn std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!(
        "cannot connect to the NATS servers {}: {error}",
        options.servers.join(",")
    ))
}

/// Checks what the servers would otherwise refuse with a less helpful message.
fn validate(options: &NatsOptions) -> Result<(), StorageError> {
    let invalid = |message: String| Err(StorageError::backend(message));
    if options.servers.is_empty() {
        return invalid("no NATS server given".into());
    }
    let stream = &options.stream;
    if stream.is_empty()
        || stream.len() > 255
        || stream.chars().any(|c| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c))
    {
        return invalid(format!(
            "invalid NATS stream name {stream:?}: use letters, digits, `-` and `_`"
        ));
    }
    // The horizons bucket is named after the stream, and a bucket's name is narrower.
    if options.prune && !stream.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
        return invalid(format!(
            "pruning keeps horizons in a bucket named after the stream, so the stream's name \
             {stream:?} may hold only ASCII letters, digits, `-` and `_`"
        ));
    }
    if !(1..=5).contains(&options.replicas) {
        return invalid(format!("a NATS stream has 1 to 5 replicas, not {}", options.replicas));
    }
    if options.request_timeout.is_zero() || options.retry_timeout.is_zero() {
        return invalid("the NATS request and retry timeouts must be longer than 0".into());
    }
    // An append retries with the same message ids for up to the retry timeout: the servers must
    // remember them at least that long, or a retry could store a version twice.
    if options.duplicate_window < limit(options) {
        return invalid(format!(
            "the idempotency window ({:?}) must be longer than an append's retries ({:?})",
            options.duplicate_window,
            limit(options)
        ));
    }
    Ok(())
}

/// The client's options: credentials, TLS, timeouts.
async fn connect_options(options: &NatsOptions) -> Result<ConnectOptions, StorageError> {
    let mut connect = ConnectOptions::new()
        .name("broker")
        .connection_timeout(options.request_timeout)
        .request_timeout(Some(options.request_timeout));
    connect = match &options.credentials {
        Credentials::None => connect,
        Credentials::CredsFile(path) => connect.credentials_file(path).await.map_err(|error| {
            StorageError::backend(format!(
                "cannot read the NATS credentials file {}: {error}",
                path.display()
            ))
        })?,
        Credentials::UserPassword { user, password } => {
            connect.user_and_password(user.clone(), password.clone())
        }
        Credentials::Token(token) => connect.token(token.clone()),
    };
    if let Some(ca) = &options.tls_ca {
        if !ca.is_file() {
            return Err(StorageError::backend(format!(
                "the TLS root certificate file {} does not exist",
                ca.display()
            )));
        }
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(connect)
}

impl Storage for NatsStorage {
    fn database_id(&self) -> Uuid {
        self.database_id
    }

    async fn append(&self, batch: Vec<NewVersion>) -> Result<Vec<Version>, StorageError> {
        let shared = self.open()?;
        bounded(&shared.options, append::append(shared, batch)).await.unwrap_or_else(|| {
            Err(StorageError::OutcomeUnknown(format!(
                "the append did not finish within {:?}",
                limit(&shared.options)
            )))
        })
    }

    fn tail(&self, after: u64) -> Tail {
        match self.open() {
            Ok(_) => tail::tail(Arc::clone(&self.shared), after),
            Err(_) => Tail::ended(),
        }
    }

    async fn latest(&self) -> Result<Vec<Version>, StorageError> {
        let shared = self.open()?;
        read_bounded(shared, "latest", snapshot::latest(shared)).await
    }

    async fn latest_at(&self, at: u64) -> Result<Vec<Version>, StorageError> {
        let shared = self.open()?;
        read_bounded(shared, "latest_at", snapshot::latest_at(shared, at)).await
    }

    async fn prune(
        &self,
        event: &str,
        retention: Retention,
        limit: usize,
    ) -> Result<Pruned, StorageError> {
        let shared = self.open()?;
        read_bounded(shared, "prune", prune::prune(shared, event, retention, limit)).await
    }

    async fn horizons(&self) -> Result<Vec<Horizon>, StorageError> {
        let shared = self.open()?;
        let horizons = read_bounded(shared, "horizons", horizons::all(shared)).await?;
        Ok(horizons
            .into_iter()
            .map(|(event, pruned_through)| Horizon { event, pruned_through })
            .collect())
    }

    async fn size(&self) -> Result<Option<u64>, StorageError> {
        let shared = self.open()?;
        let stream = &shared.options.stream;
        let info = stream::info(&shared.client, stream, shared.options.request_timeout)
            .await
            .map_err(|error| error.into_storage(&format!("stream info of {stream}")))?;
        Ok(info["state"]["bytes"].as_u64())
    }

    async fn history(
        &self,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Version>, StorageError> {
        let shared = self.open()?;
        read_bounded(shared, "history", reads::history(shared, event, after, limit)).await
    }

    async fn since(&self, after: u64, limit: usize) -> Result<Vec<Version>, StorageError> {
        let shared = self.open()?;
        read_bounded(shared, "since", reads::since(shared, after, limit)).await
    }

    async fn writable(&self) -> Result<(), StorageError> {
        let shared = self.open()?;
        if shared.client.connection_state() != async_nats::connection::State::Connected {
            return Err(StorageError::Unavailable("not connected to any NATS server".into()));
        }
        bounded(&shared.options, stream::writable(&shared.client, &shared.options))
            .await
            .unwrap_or_else(|| Err(StorageError::Unavailable("no answer in time".into())))
    }

    async fn close(&self) -> Result<(), StorageError> {
        if self.shared.closed.is_cancelled() {
            return Ok(());
        }
        self.shared.closed.cancel();
        // Sends what is buffered and closes the connection, for the tails' handles too.
        match tokio::time::timeout(self.shared.options.request_timeout, self.shared.client.drain())
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                Err(StorageError::backend(format!("closing the connection: {error}")))
            }
            Err(_) => Err(StorageError::backend("closing the connection: no answer in time")),
        }
    }
}
