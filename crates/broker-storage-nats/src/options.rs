//! [`NatsOptions`] and [`Credentials`]: where the servers are, how to log in, and the settings of
//! the stream.

use std::path::PathBuf;
use std::time::Duration;

/// How [`NatsStorage::connect`](crate::NatsStorage::connect) reaches the servers and which stream
/// it uses.
///
/// Start from [`NatsOptions::default`] and change the fields you need:
///
/// ```
/// use broker_storage_nats::{Credentials, NatsOptions};
///
/// let mut options = NatsOptions::default();
/// options.servers = vec!["nats://h1:4222".into(), "nats://h2:4222".into()];
/// options.credentials = Credentials::Token("s3cret".into());
/// assert_eq!(options.stream, "broker");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsOptions {
    /// The servers to connect to, such as `nats://h1:4222`; the client reconnects to any of
    /// them, and to the other servers of the cluster it learns of. Default:
    /// `nats://127.0.0.1:4222`.
    pub servers: Vec<String>,
    /// The JetStream stream that holds the database, created on first use. Its name is also the
    /// prefix of its subjects. Default: `broker`.
    pub stream: String,
    /// How many servers keep a copy of every version. The stream is created with this many
    /// replicas, and a stream that has another number is refused: the number is how many
    /// server failures the database survives. Default: 3.
    pub replicas: usize,
    /// How long the servers remember a publish's message id to recognise its retries: the
    /// storage's idempotency window. Default:
    /// [`DEFAULT_IDEMPOTENCY_WINDOW`](broker_storage::DEFAULT_IDEMPOTENCY_WINDOW).
    pub duplicate_window: Duration,
    /// Whether the store may prune: remove old versions with
    /// [`Storage::prune`](broker_storage::Storage::prune). Default: `false`.
    ///
    /// Pruning removes versions with the stream's purge, which a broker's stream otherwise
    /// forbids (`deny_purge`) so that no tool can lose versions by mistake. With this set, the
    /// stream is created allowing purges (still not deletes of single messages, nor limits that
    /// discard versions), a stream that forbids them is refused, and the horizons of pruned
    /// events are kept in the key-value bucket `<stream>_horizons` beside it. Without it, a
    /// stream that allows purges is refused, and `prune` fails. Every broker on one stream must
    /// agree on it. NATS never lets a stream's `deny_purge` be lifted: a stream created without
    /// this option can never be pruned.
    pub prune: bool,
    /// How to log in. Default: [`Credentials::None`].
    pub credentials: Credentials,
    /// A PEM file of the certificate authorities to trust, which also turns TLS on. Default:
    /// `None` (TLS only where a server asks for it, against the system's roots).
    pub tls_ca: Option<PathBuf>,
    /// How long one request to the servers may take before it is given up or retried. Default:
    /// [`DEFAULT_REQUEST_TIMEOUT`](Self::DEFAULT_REQUEST_TIMEOUT).
    pub request_timeout: Duration,
    /// How long an operation may go on retrying: an append whose answer was lost, before it
    /// answers [`StorageError::OutcomeUnknown`](broker_storage::StorageError::OutcomeUnknown),
    /// and a read answered by replicas that are behind, before it answers
    /// [`StorageError::Unavailable`](broker_storage::StorageError::Unavailable). Default:
    /// [`DEFAULT_RETRY_TIMEOUT`](Self::DEFAULT_RETRY_TIMEOUT). Keep it well inside
    /// `duplicate_window`, which is what makes an append's retries safe.
    pub retry_timeout: Duration,
    /// How long [`connect`](crate::NatsStorage::connect) keeps trying while no server answers
    /// or JetStream is not ready yet, so that a broker node may start before or together with
    /// its NATS servers. Default: [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT).
    pub connect_timeout: Duration,
}

impl NatsOptions {
    /// Two seconds: a loaded cluster answers in milliseconds, and a request that has no answer
    /// after two seconds has usually lost its server.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
    /// Eight seconds: long enough for a cluster to elect a new stream leader (5 to 7 s here), so
    /// that an append in flight when a leader dies mostly succeeds, and short enough that a
    /// publisher hears of a failure while it still waits.
    pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(8);
    /// Thirty seconds: what a cluster takes to start and elect its JetStream leaders, with room.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for NatsOptions {
    fn default() -> NatsOptions {
        NatsOptions {
            servers: vec!["nats://127.0.0.1:4222".into()],
            stream: "broker".into(),
            replicas: 3,
            duplicate_window: broker_storage::DEFAULT_IDEMPOTENCY_WINDOW,
            prune: false,
            credentials: Credentials::None,
            tls_ca: None,
            request_timeout: NatsOptions::DEFAULT_REQUEST_TIMEOUT,
            retry_timeout: NatsOptions::DEFAULT_RETRY_TIMEOUT,
            connect_timeout: NatsOptions::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Written out by hand so that passwords and tokens never reach a log.
impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("servers", &self.servers)
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("duplicate_window", &self.duplicate_window)
            .field("prune", &self.prune)
            .field("credentials", &self.credentials)
            .field("tls_ca", &self.tls_ca)
            .field("request_timeout", &self.request_timeout)
            .field("retry_timeout", &self.retry_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// How the client logs in to the servers.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// No credentials.
    None,
    /// A `.creds` file holding a user JWT and its NKey seed, as `nsc` writes them.
    CredsFile(PathBuf),
    /// A user name and password.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
            Credentials::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"<hidden>")
                .finish(),
            Credentials::Token(_) => f.debug_tuple("Token").field(&"<hidden>").finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let password = Credentials::UserPassword { user: "u".into(), password: "pw1".into() };
        for (credentials, secret) in
            [(password, "pw1"), (Credentials::Token("tok1".into()), "tok1")]
        {
            let options = NatsOptions { credentials, ..NatsOptions::default() };
            assert!(!format!("{options:?}").contains(secret), "{options:?}");
        }
    }
}
