//! The peers' recipes, which the benchmarks measure the broker against: where they are
//! (`BROKER_PEERS`, by default `../shared/peers` beside the workspace), and building broker
//! 0.2.0 from its recipe into `target/peers/`.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The variable that points at the folder of peer recipes.
const VARIABLE: &str = "BROKER_PEERS";

/// The broker 0.2.0 recipe's folder inside the peers' folder, and the binary its `build.sh`
/// builds, relative to that folder.
const BROKER_0_2_0: &str = "broker-0.2.0";
const BROKER_0_2_0_BINARY: &str = "target/release/broker-0_2_0";

/// The folder of peer recipes.
pub(crate) struct Peers {
    dir: PathBuf,
    /// Whether `dir` comes from `BROKER_PEERS` rather than the default.
    from_variable: bool,
}

impl Peers {
    /// `BROKER_PEERS` if set (relative to the current directory), else `../shared/peers` beside
    /// the workspace `root`.
    pub(crate) fn locate(root: &Path) -> Peers {
        Peers::at(root, std::env::var_os(VARIABLE))
    }

    /// The folder `variable` names, if set and not empty, else the default beside `root`.
    fn at(root: &Path, variable: Option<OsString>) -> Peers {
        let (dir, from_variable) = match variable {
            Some(dir) if !dir.is_empty() => (PathBuf::from(dir), true),
            _ => (root.parent().unwrap_or(root).join("shared/peers"), false),
        };
        Peers { dir: std::path::absolute(&dir).unwrap_or(dir), from_variable }
    }

    /// nchan's configuration, which must exist.
    pub(crate) fn nchan_conf(&self) -> Result<PathBuf, String> {
        let conf = self.dir.join("nchan.conf");
        if conf.is_file() { Ok(conf) } else { Err(self.missing("nchan", &conf, "ours,broker")) }
    }

    /// Where `build_broker_0_2_0` leaves broker 0.2.0's binary, under the workspace `root`.
    fn broker_0_2_0_binary(root: &Path) -> PathBuf {
        root.join("target/peers").join(BROKER_0_2_0).join(BROKER_0_2_0_BINARY)
    }

    /// Checks that broker 0.2.0 is built, or that its recipe is there to build it, before the
    /// minutes of a release build.
    pub(crate) fn check_broker_0_2_0(&self, root: &Path) -> Result<(), String> {
        let build = self.dir.join(BROKER_0_2_0).join("build.sh");
        if Peers::broker_0_2_0_binary(root).exists() || build.is_file() {
            Ok(())
        } else {
            Err(self.missing("broker 0.2.0", &build, "ours,nchan"))
        }
    }

    /// Builds broker 0.2.0 from its recipe in a copy under `target/peers/broker-0.2.0` of the
    /// workspace `root`, once: nothing of it enters the repository, and the recipe's folder,
    /// which may be read-only, is only read.
    pub(crate) fn build_broker_0_2_0(&self, root: &Path) -> Result<(), String> {
        let dir = root.join("target/peers").join(BROKER_0_2_0);
        if dir.join(BROKER_0_2_0_BINARY).exists() {
            return Ok(());
        }
        self.check_broker_0_2_0(root)?;
        let source = self.dir.join(BROKER_0_2_0);
        eprintln!("building the broker 0.2.0 peer in {} (about 4 minutes, once)", dir.display());
        let ignore =
            Ignore::parse(&fs::read_to_string(source.join(".gitignore")).unwrap_or_default());
        copy_tree(&source, &dir, &ignore, true)
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
        if status.success() {
            Ok(())
        } else {
            Err(format!("building broker 0.2.0 failed: {status}"))
        }
    }

    /// The failure of a missing recipe: what, where it was looked for, and the two ways on.
    fn missing(&self, peer: &str, path: &Path, others: &str) -> String {
        let from = if self.from_variable {
            format!("from {VARIABLE}")
        } else {
            format!("the default, ../shared/peers beside the workspace, as {VARIABLE} is not set")
        };
        format!(
            "the {peer} peer's recipe is missing: {} does not exist\n\
             peer recipes are looked for in {} ({from}; see docs/BENCHMARKS.md)\n\
             point {VARIABLE} at a folder that holds {BROKER_0_2_0}/ and nchan.conf, or leave \
             the {peer} target out of --targets (--targets {others})",
            path.display(),
            self.dir.display(),
        )
    }
}

/// What a recipe's own build leaves in its folder, which a copy of it leaves out: the patterns of
/// the recipe's `.gitignore` (names with `*` wildcards, a leading `/` for the top level only; a
/// trailing `/` is ignored, and so are negations), and cargo's `target` in any case.
#[derive(Debug)]
struct Ignore {
    /// Each pattern, without its slashes, and whether it applies at the top level only.
    patterns: Vec<(String, bool)>,
}

impl Ignore {
    fn parse(gitignore: &str) -> Ignore {
        let mut patterns = vec![("target".to_owned(), false)];
        for line in gitignore.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let anchored = line.starts_with('/');
            patterns.push((line.trim_matches('/').to_owned(), anchored));
        }
        Ignore { patterns }
    }

    /// Whether the entry `name`, at the top of the recipe's folder if `top`, is left out.
    fn skips(&self, name: &str, top: bool) -> bool {
        self.patterns.iter().any(|(pattern, anchored)| (top || !anchored) && glob(pattern, name))
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else { return false };
            (0..=tail.len())
                .filter(|&at| tail.is_char_boundary(at))
                .any(|at| glob(rest, &tail[at..]))
        }
    }
}

/// Copies the files of `from` into `to`, leaving out what `ignore` skips, with write permission
/// (shared originals may be read-only).
fn copy_tree(from: &Path, to: &Path, ignore: &Ignore, top: bool) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if ignore.skips(&name.to_string_lossy(), top) {
            continue;
        }
        let destination = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &destination, ignore, false)?;
        } else {
            fs::copy(entry.path(), &destination)?;
            let mode = fs::metadata(&destination)?.permissions().mode();
            fs::set_permissions(&destination, fs::Permissions::from_mode(mode | 0o200))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Ignore, Peers};

    #[test]
    fn recipes_are_beside_the_workspace_unless_the_variable_says_otherwise() {
        let root = Path::new("/home/me/broker");
        for (variable, dir, from) in [
            (None, "/home/me/shared/peers", "the default, ../shared/peers beside the workspace"),
            (Some(""), "/home/me/shared/peers", "the default"),
            (Some("/srv/peers"), "/srv/peers", "from BROKER_PEERS"),
        ] {
            let peers = Peers::at(root, variable.map(Into::into));
            assert_eq!(peers.dir, Path::new(dir));
            let error = peers.nchan_conf().expect_err("no recipes in the test's paths");
            assert!(error.contains(&format!("{dir}/nchan.conf does not exist")), "{error}");
            assert!(error.contains(&format!("looked for in {dir} ({from}")), "{error}");
            assert!(error.contains("--targets ours,broker"), "{error}");
        }
    }

    #[test]
    fn a_recipes_gitignore_says_what_its_build_leaves() {
        let ignore = Ignore::parse("# what build.sh makes\nsled-0.30.3/\n*.log\n/out\n!keep\n\n");
        for (name, top, skipped) in [
            ("sled-0.30.3", true, true),
            ("sled-0.30.3", false, true),
            ("target", true, true),
            ("target", false, true),
            ("build.log", false, true),
            ("out", true, true),
            ("out", false, false),
            ("keep", true, false),
            ("src", true, false),
            ("Cargo.toml", true, false),
            ("build.sh", true, false),
        ] {
            assert_eq!(ignore.skips(name, top), skipped, "{name} at the top: {top}");
        }
    }
}
