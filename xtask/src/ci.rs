//! `cargo xtask ci`: everything CI runs, in the order it runs it, from the tools the tests need
//! to the examples.

use crate::{cargo, setup};

/// The examples CI runs, so that they keep working as the crates change.
const EXAMPLES: &[&str] = &["embed", "sqlite_backend", "custom_main"];

pub(crate) fn ci() -> Result<(), String> {
    // First, so that a fresh machine fails (or installs) before minutes of building, not in the
    // middle of the tests.
    setup::setup()?;
    cargo::run(&["fmt", "--all", "--check"], &[])?;
    cargo::run(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    // The end-to-end tests start the real binary, so build it before they run.
    cargo::run(&["build", "--package", "broker-server"], &[])?;
    cargo::run(&["test", "--workspace"], &[])?;
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
