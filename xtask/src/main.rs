//! Project automation. `cargo xtask ci` runs exactly what CI runs, so green here is green there.
//!
//! Layout: `ci` is the CI run; `bench` drives the load generator; `cargo` runs cargo itself.

mod bench;
mod cargo;
mod ci;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci    format check, clippy with warnings denied, every test, documentation build, examples
  bench <scenario|all> [options]   release build, then the load generator (docs/BENCHMARKS.md)";

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci::ci(),
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
