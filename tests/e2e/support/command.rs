//! The binary run as a command rather than a server: a subcommand, or a start-up that must fail.

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use super::binary;

/// How long a command may take; a server that starts when it should refuse to is killed then.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `broker-server args` with only `env` configuring it (every inherited `BROKER_`
/// variable, `PORT` and `RUST_LOG` removed), and returns what it printed and how it exited.
pub async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary());
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let inherited = std::env::vars_os().map(|(key, _)| key);
    for key in inherited.filter(|key| key.to_string_lossy().starts_with("BROKER_")) {
        command.env_remove(key);
    }
    command.env_remove("PORT").env_remove("RUST_LOG").envs(env.iter().copied());
    tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("broker-server {args:?} still runs after {COMMAND_TIMEOUT:?}"))
        .expect("run broker-server")
}
