//! The `--nats` flags: the broker keeps its database in a NATS JetStream stream, shared with every
//! other broker that names the same stream, instead of in a redb file.

use std::path::PathBuf;

use broker_storage_nats::{Credentials, NatsOptions};

use crate::Error;

/// Where the NATS servers are and how to log in to them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsArgs {
    /// Keep the database in a NATS JetStream stream on these servers, instead of in the --data
    /// file: a comma-separated list such as `nats://h1:4222,nats://h2:4222`. Every broker given
    /// the same servers and stream shares one database. The servers should run with
    /// `jetstream { sync_interval: always }`, or an acknowledged insert can be lost with a
    /// machine.
    #[arg(long = "nats", env = "BROKER_NATS", value_name = "URLS", value_delimiter = ',')]
    pub servers: Vec<String>,

    /// The stream that holds the database, created on first use. [default: broker]
    #[arg(long, env = "BROKER_NATS_STREAM", value_name = "NAME")]
    pub nats_stream: Option<String>,

    /// How many servers keep a copy of every version; the stream is created with this many, and
    /// a stream with another number is refused. [default: 3]
    #[arg(long, env = "BROKER_NATS_REPLICAS", value_name = "N")]
    pub nats_replicas: Option<usize>,

    /// A NATS credentials file (a user JWT and its seed, as `nsc` writes them).
    #[arg(long, env = "BROKER_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,

    /// The NATS user name; give its password with --nats-password.
    #[arg(long, env = "BROKER_NATS_USER", value_name = "USER")]
    pub nats_user: Option<String>,

    /// The NATS user's password; best set through the environment, where `ps` does not show it.
    #[arg(long, env = "BROKER_NATS_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,

    /// A NATS token; best set through the environment, where `ps` does not show it.
    #[arg(long, env = "BROKER_NATS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,

    /// A PEM file of the certificate authorities that sign the NATS servers' certificates; turns
    /// TLS on.
    #[arg(long, env = "BROKER_NATS_TLS_CA", value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,
}

impl NatsArgs {
    /// Whether `--nats` was given.
    pub fn is_set(&self) -> bool {
        !self.servers.is_empty()
    }

    /// The storage options, or `None` without `--nats`; the error says which flags clash.
    pub fn into_options(self) -> Result<Option<NatsOptions>, Error> {
        let NatsArgs {
            servers,
            nats_stream,
            nats_replicas,
            nats_creds,
            nats_user,
            nats_password,
            nats_token,
            nats_tls_ca,
        } = self;
        let invalid = |message: &str| Err(Error::Config(message.into()));
        let servers: Vec<String> = servers
            .into_iter()
            .map(|server| server.trim().to_owned())
            .filter(|server| !server.is_empty())
            .collect();
        if servers.is_empty() {
            let others = nats_stream.is_some()
                || nats_replicas.is_some()
                || nats_creds.is_some()
                || nats_user.is_some()
                || nats_password.is_some()
                || nats_token.is_some()
                || nats_tls_ca.is_some();
            return if others {
                invalid("the --nats-* flags need --nats, the servers to connect to")
            } else {
                Ok(None)
            };
        }
        let credentials = match (nats_creds, nats_user, nats_password, nats_token) {
            (None, None, None, None) => Credentials::None,
            (Some(file), None, None, None) => Credentials::CredsFile(file),
            (None, Some(user), Some(password), None) => {
                Credentials::UserPassword { user, password }
            }
            (None, None, None, Some(token)) => Credentials::Token(token),
            (None, Some(_), None, None) => return invalid("--nats-user needs --nats-password"),
            (None, None, Some(_), None) => return invalid("--nats-password needs --nats-user"),
            _ => {
                return invalid(
                    "give one way to log in to NATS: --nats-creds, --nats-user with \
                     --nats-password, or --nats-token",
                );
            }
        };
        let mut options = NatsOptions::default();
        options.servers = servers;
        if let Some(stream) = nats_stream {
            options.stream = stream;
        }
        if let Some(replicas) = nats_replicas {
            if !(1..=5).contains(&replicas) {
                return invalid("--nats-replicas must be 1 to 5, as NATS allows");
            }
            options.replicas = replicas;
        }
        options.credentials = credentials;
        options.tls_ca = nats_tls_ca;
        Ok(Some(options))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    fn options(args: &[&str]) -> Result<Option<NatsOptions>, String> {
        let cli = Cli::try_parse_from(std::iter::once("broker-server").chain(args.iter().copied()))
            .map_err(|error| error.to_string())?;
        cli.nats.into_options().map_err(|error| error.to_string())
    }

    #[test]
    fn without_nats_the_file_is_used() {
        assert_eq!(options(&[]), Ok(None));
    }

    #[test]
    fn a_server_list_and_the_defaults() {
        let options = options(&["--nats", "nats://h1:4222,nats://h2:4222"]).expect("valid");
        let options = options.expect("--nats given");
        assert_eq!(options.servers, ["nats://h1:4222", "nats://h2:4222"]);
        assert_eq!((options.stream.as_str(), options.replicas), ("broker", 3));
        assert_eq!(options.credentials, Credentials::None);
    }

    #[test]
    fn credentials_of_every_kind() {
        let check = |args: &[&str], expected: Credentials| {
            let args: Vec<&str> = ["--nats", "nats://h:4222"].iter().chain(args).copied().collect();
            let options = options(&args).expect("valid").expect("--nats given");
            assert_eq!(options.credentials, expected, "{args:?}");
        };
        check(&["--nats-creds", "/etc/b.creds"], Credentials::CredsFile("/etc/b.creds".into()));
        check(
            &["--nats-user", "b", "--nats-password", "pw"],
            Credentials::UserPassword { user: "b".into(), password: "pw".into() },
        );
        check(&["--nats-token", "t"], Credentials::Token("t".into()));
    }

    #[test]
    fn clashing_flags_are_refused() {
        let refused = |args: &[&str], expected: &str| match options(args) {
            Err(error) => assert!(error.contains(expected), "{args:?}: {error}"),
            Ok(options) => panic!("{args:?} accepted: {options:?}"),
        };
        refused(&["--nats-stream", "s"], "need --nats");
        refused(&["--nats", "nats://h:4222", "--nats-user", "u"], "needs --nats-password");
        refused(&["--nats", "nats://h:4222", "--nats-token", "t", "--nats-creds", "f"], "one way");
        refused(&["--nats", "nats://h:4222", "--nats-replicas", "7"], "1 to 5");
    }
}
