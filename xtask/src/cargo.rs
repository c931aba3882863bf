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

/// Runs `cargo ARGS` and returns what it prints on standard output, failing if it fails.
pub(crate) fn output(args: &[&str]) -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("$ cargo {}", args.join(" "));
    let output = Command::new(&cargo)
        .args(args)
        .output()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if output.status.success() {
        String::from_utf8(output.stdout).map_err(|_| "cargo printed non-UTF-8".to_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("`cargo {}` failed: {}: {stderr}", args.join(" "), output.status))
    }
}
