//! `cargo xtask bench`: builds the server and the load generator in release mode, builds the
//! broker 0.2.0 peer when the run needs it, and runs `broker-bench` with the arguments given.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cargo;

/// The subcommands of `broker-bench` that are passed through as they are; anything else is a
/// list of scenarios and options for `broker-bench run`.
const SUBCOMMANDS: &[&str] = &["run", "chart", "prepare", "help", "--help", "-h"];

pub(crate) fn bench(args: &[String]) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut full: Vec<String> = Vec::new();
    if !args.first().is_some_and(|first| SUBCOMMANDS.contains(&first.as_str())) {
        full.push("run".to_owned());
    }
    full.extend(args.iter().cloned());
    cargo::run(
        &["build", "--release", "--package", "broker-server", "--package", "broker-bench"],
        &[],
    )?;
    if full[0] == "run" && wants_broker_0_2_0(&full) {
        build_peer(&root)?;
    }
    let exe = root.join("target/release/broker-bench");
    eprintln!("$ {} {}", exe.display(), full.join(" "));
    let status = Command::new(&exe)
        .args(&full)
        .status()
        .map_err(|error| format!("cannot run {}: {error}", exe.display()))?;
    if status.success() { Ok(()) } else { Err(format!("broker-bench failed: {status}")) }
}

/// Whether the run includes the broker 0.2.0 target (it does unless `--targets` leaves it out).
fn wants_broker_0_2_0(args: &[String]) -> bool {
    let mut targets = None;
    for (index, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--targets=") {
            targets = Some(value.to_owned());
        } else if arg == "--targets" {
            targets = args.get(index + 1).cloned();
        }
    }
    targets.is_none_or(|targets| targets.split(',').any(|target| target.trim() == "broker"))
}

/// Builds broker 0.2.0 from `../shared/peers/broker-0.2.0` in a copy under
/// `target/peers/broker-0.2.0`, once: nothing of it enters the repository.
fn build_peer(root: &Path) -> Result<(), String> {
    let dir = root.join("target/peers/broker-0.2.0");
    if dir.join("target/release/broker-0_2_0").exists() {
        return Ok(());
    }
    let source = root.join("../shared/peers/broker-0.2.0");
    if !source.join("build.sh").exists() {
        return Err(format!(
            "{} not found: the broker 0.2.0 peer cannot be built; leave it out with \
             --targets ours,nchan",
            source.display()
        ));
    }
    eprintln!("building the broker 0.2.0 peer in {} (about 4 minutes, once)", dir.display());
    copy_tree(&source, &dir)
        .map_err(|error| format!("cannot copy {}: {error}", source.display()))?;
    // The copy sits inside this workspace's directory: an empty [workspace] table keeps cargo
    // from taking it for a member.
    let manifest = dir.join("Cargo.toml");
    let mut text = fs::read_to_string(&manifest).map_err(|error| error.to_string())?;
    if !text.contains("\n[workspace]") {
        text.push_str("\n[workspace]\n");
        fs::write(&manifest, text).map_err(|error| error.to_string())?;
    }
    let status = Command::new("bash")
        .arg(dir.join("build.sh"))
        .status()
        .map_err(|error| format!("cannot run build.sh: {error}"))?;
    if status.success() { Ok(()) } else { Err(format!("building broker 0.2.0 failed: {status}")) }
}

/// Copies the files of `from` into `to`, leaving out build output, with write permission (the
/// shared originals are read-only).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" || name == "sled-0.30.3" {
            continue;
        }
        let destination: PathBuf = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &destination)?;
        } else {
            fs::copy(entry.path(), &destination)?;
            let mode = fs::metadata(&destination)?.permissions().mode();
            fs::set_permissions(&destination, fs::Permissions::from_mode(mode | 0o200))?;
        }
    }
    Ok(())
}
