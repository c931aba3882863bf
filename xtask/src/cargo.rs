//! Running cargo from xtask: each command echoed before it runs, and a failure named.

use std::process::Command;

/// Runs `cargo ARGS` with `env` added to the environment, and fails if it does.
pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    // The cargo that runs xtask, so that `cargo +toolchain xtask` stays on that toolchain.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed: {status}", args.join(" ")))
    }
}
