//! `cargo xtask ci`: everything CI runs, in the order it runs it, from the tools the tests need
//! to the examples.

use crate::{cargo, setup};

/// The examples CI runs, so that they keep working as the crates change.
const EXAMPLES: &[&str] = &["embed", "sqlite_backend", "custom_main"];

/// Crates the engine must never depend on, even indirectly: it does no I/O but through the
/// storage trait, so a program that embeds it builds no transport and no backend it does not
/// choose (docs/ARCHITECTURE.md).
const NOT_IN_THE_ENGINE: &[&str] = &["hyper", "redb", "async-nats", "broker-storage-redb"];

pub(crate) fn ci() -> Result<(), String> {
    // First, so that a fresh machine fails (or installs) before minutes of building, not in the
    // middle of the tests.
    setup::setup()?;
    cargo::run(&["fmt", "--all", "--check"], &[])?;
    engine_layering()?;
    cargo::run(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    // The end-to-end tests start the real binary, so build it before they run.
    cargo::run(&["build", "--package", "broker-server"], &[])?;
    cargo::run(&["test", "--workspace"], &[])?;
    // Each criterion micro-benchmark once, as a test, so that none of them stops working
    // unnoticed between two runs of `cargo bench`.
    cargo::run(&["test", "--package", "broker-bench", "--benches"], &[])?;
    // The workspace builds broker-auth with its `public-key` feature; HS256 alone, on the
    // provider it installs without that feature, is a build of its own.
    let package = ["--package", "broker-auth", "--no-default-features"];
    cargo::run(
        &[&["clippy", "--all-targets"][..], &package, &["--", "-D", "warnings"]].concat(),
        &[],
    )?;
    cargo::run(&[&["test"][..], &package].concat(), &[])?;
    cargo::run(&["doc", "--workspace", "--no-deps"], &[("RUSTDOCFLAGS", "-D warnings")])?;
    for example in EXAMPLES {
        cargo::run(&["run", "--package", "broker-examples", "--example", example], &[])?;
    }
    Ok(())
}

/// Fails if `broker-core` depends on a crate of [`NOT_IN_THE_ENGINE`].
fn engine_layering() -> Result<(), String> {
    let tree = cargo::output(&[
        "tree",
        "--package",
        "broker-core",
        "--edges",
        "normal",
        "--prefix",
        "none",
    ])?;
    let found: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| NOT_IN_THE_ENGINE.contains(name))
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("broker-core depends on {}, which only the server may", found.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_engine_builds_no_transport_and_no_backend() {
        super::engine_layering().expect("broker-core's dependencies");
    }
}
