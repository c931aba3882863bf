//! Project automation. `cargo xtask ci` runs exactly what CI runs, so green here is green there.
//!
//! Layout: `ci` is the CI run; `setup` installs the test tools of the table in `tools`; `bench`
//! drives the load generator, with the peers it measures against built by `peers`; `cargo` runs
//! cargo itself.

mod bench;
mod cargo;
mod ci;
mod peers;
mod setup;
mod tools;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci     install the test tools this machine is missing (as root), then format check, clippy
         with warnings denied, every test, documentation build, examples
  setup  the first step of ci alone: install the missing test tools (as root), or print the
         commands that would
  bench <scenario|all> [options]   release build, then the load generator (docs/BENCHMARKS.md)";

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci::ci(),
        Some("setup") => setup::setup(),
        Some("bench") => bench::bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}
