//! Running the whole benchmark inside a loopback-only network namespace.
//!
//! broker 0.2.0 binds `0.0.0.0` and cannot be told otherwise. So that it never listens on a real
//! interface, a run that includes it re-executes itself under `unshare --net`, where the only
//! interface is `lo`, together with every server and load-generator process it starts.

use std::process::{Command, ExitCode};

use anyhow::Context;

/// Set in the environment of the re-executed run.
pub(crate) const MARKER: &str = "BROKER_BENCH_NETNS";

/// Whether this process already runs in the namespace.
pub(crate) fn inside() -> bool {
    std::env::var_os(MARKER).is_some()
}

/// Runs this same command again inside a new network namespace with `lo` up, and returns its
/// exit status.
pub(crate) fn reexec() -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    eprintln!("broker-bench: re-running inside a loopback-only network namespace (unshare --net)");
    let status = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", r#"ip link set lo up && exec "$0" "$@""#])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(MARKER, "1")
        .status()
        .context("cannot run `unshare` (util-linux)")?;
    if !status.success() && status.code() == Some(1) {
        eprintln!(
            "broker-bench: the broker 0.2.0 target needs a network namespace (root, `unshare` and \
             `ip`); run as root or leave it out with --targets ours,nchan"
        );
    }
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
