//! `cargo xtask bench`: builds the server and the load generator in release mode, builds the
//! broker 0.2.0 peer when the run needs it, and runs `broker-bench` with the arguments given.

use std::path::Path;
use std::process::Command;

use crate::cargo;
use crate::peers::Peers;

/// The subcommands of `broker-bench` that are passed through as they are; anything else is a
/// list of scenarios and options for `broker-bench run`.
const SUBCOMMANDS: &[&str] = &["run", "chart", "prepare", "help", "--help", "-h"];

pub(crate) fn bench(args: &[String]) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ is in the workspace");
    let mut full: Vec<String> = Vec::new();
    if !args.first().is_some_and(|first| SUBCOMMANDS.contains(&first.as_str())) {
        full.push("run".to_owned());
    }
    full.extend(args.iter().cloned());
    let run = full[0] == "run" && !full.iter().any(|arg| arg == "--help" || arg == "-h");
    let peers = Peers::locate(root);
    // The peers' recipes are checked before the release build, which takes minutes.
    let build_broker_0_2_0 = run && wants(&full, "broker") && !has(&full, "--broker-0-2-0");
    if build_broker_0_2_0 {
        peers.check_broker_0_2_0(root)?;
    }
    if run && wants(&full, "nchan") && !has(&full, "--nchan-conf") {
        full.extend(["--nchan-conf".to_owned(), peers.nchan_conf()?.display().to_string()]);
    }
    // The load generator is no default member of the workspace, so it is named here.
    cargo::run(
        &["build", "--release", "--package", "broker-server", "--package", "broker-bench"],
        &[],
    )?;
    if build_broker_0_2_0 {
        peers.build_broker_0_2_0(root)?;
    }
    let exe = root.join("target/release/broker-bench");
    eprintln!("$ {} {}", exe.display(), full.join(" "));
    let status = Command::new(&exe)
        .args(&full)
        .status()
        .map_err(|error| format!("cannot run {}: {error}", exe.display()))?;
    if status.success() { Ok(()) } else { Err(format!("broker-bench failed: {status}")) }
}

/// Whether the run includes `target` (every target does unless `--targets` leaves it out).
fn wants(args: &[String], target: &str) -> bool {
    let mut targets = None;
    for (index, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--targets=") {
            targets = Some(value.to_owned());
        } else if arg == "--targets" {
            targets = args.get(index + 1).cloned();
        }
    }
    targets.is_none_or(|targets| targets.split(',').any(|name| name.trim() == target))
}

/// Whether the option `name` is given, as `name value` or `name=value`.
fn has(args: &[String], name: &str) -> bool {
    args.iter().any(|arg| {
        arg.strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    })
}

#[cfg(test)]
mod tests {
    use super::{has, wants};

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn targets_are_all_unless_listed() {
        for (line, target, wanted) in [
            ("run insert", "broker", true),
            ("run insert", "nchan", true),
            ("run insert --targets ours,nchan", "broker", false),
            ("run insert --targets ours,nchan", "nchan", true),
            ("run insert --targets=ours", "nchan", false),
            ("run insert --targets=ours,broker", "broker", true),
        ] {
            assert_eq!(wants(&args(line), target), wanted, "{line}: {target}");
        }
    }

    #[test]
    fn options_are_found_in_both_spellings() {
        for (line, wanted) in [
            ("run idle --nchan-conf x.conf", true),
            ("run idle --nchan-conf=x.conf", true),
            ("run idle --nchan-confx", false),
            ("run idle", false),
        ] {
            assert_eq!(has(&args(line), "--nchan-conf"), wanted, "{line}");
        }
    }
}
