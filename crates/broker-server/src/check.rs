//! `broker-server check`: verify a database file no broker is using, and say what to do about
//! what was found.

use std::fmt;
use std::path::PathBuf;

use broker_storage::StorageError;
use broker_storage_redb::{CheckReport, RedbStorage};

use crate::{Error, default_data_path};

/// `broker-server check`: which file to verify.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The redb database file to check; the server's own when not given.
    /// [default: as for the server's --data]
    #[arg(long, env = "BROKER_DATA")]
    pub data: Option<PathBuf>,
}

impl CheckArgs {
    /// Checks the file: this command's `--data`, else `server_data` (the server's `--data`,
    /// given before the subcommand), else the server's default path.
    pub async fn run(&self, server_data: Option<PathBuf>) -> Verdict {
        let path = match self.data.clone().or(server_data) {
            Some(path) => path,
            None => match default_data_path() {
                Ok(path) => path,
                Err(error) => return Verdict::Failed(error),
            },
        };
        match RedbStorage::check(&path).await {
            Ok(report) if report.is_clean() => Verdict::Clean(report),
            Ok(report) => Verdict::Damaged(report),
            Err(error) if in_use(&error) => Verdict::InUse(path),
            // The backend's messages name the file.
            Err(error) => Verdict::Unchecked(error),
        }
    }
}

/// Whether `error` says the file is open elsewhere: the backend reports it as an I/O error of
/// kind `ResourceBusy` (see [`RedbStorage::check`] and [`RedbStorage::open_with`]).
pub(crate) fn in_use(error: &StorageError) -> bool {
    match error {
        StorageError::Backend(error) => error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|error| error.kind() == std::io::ErrorKind::ResourceBusy),
        _ => false,
    }
}

/// What `broker-server check` found. Its [`Display`](fmt::Display) is what the command prints:
/// on standard output for a file that was checked, on standard error otherwise.
#[derive(Debug)]
#[non_exhaustive]
pub enum Verdict {
    /// The file is clean: one line, exit status 0.
    Clean(CheckReport),
    /// The file is damaged: the problem, then what to do; exit status 1.
    Damaged(CheckReport),
    /// A running broker holds the file, so it cannot be checked: exit status 2.
    InUse(PathBuf),
    /// The file could not be checked at all (missing, unreadable, another format): exit
    /// status 2.
    Unchecked(StorageError),
    /// No file to check: there is no `--data` and no default path; exit status 2.
    Failed(Error),
}

impl Verdict {
    /// The exit status: 0 clean, 1 damaged, 2 not checked.
    pub fn exit_status(&self) -> u8 {
        match self {
            Verdict::Clean(_) => 0,
            Verdict::Damaged(_) => 1,
            Verdict::InUse(_) | Verdict::Unchecked(_) | Verdict::Failed(_) => 2,
        }
    }

    /// Whether the file was checked, clean or not: the verdict then goes to standard output.
    pub fn checked(&self) -> bool {
        matches!(self, Verdict::Clean(_) | Verdict::Damaged(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Clean(report) => write!(f, "{report}"),
            Verdict::Damaged(report) => write!(
                f,
                "{report}\nrestore the last backup that checks clean: start broker-server with \
                 --data pointing at it (or at a copy of it); versions stored after that backup \
                 are not in it"
            ),
            Verdict::InUse(path) => write!(
                f,
                "cannot check {}: a running broker is using it; check a copy instead: \
                 `broker-server backup --to copy.redb`, then \
                 `broker-server check --data copy.redb`",
                path.display()
            ),
            Verdict::Unchecked(error) => write!(f, "{error}"),
            Verdict::Failed(error) => write!(f, "cannot check: {error}"),
        }
    }
}
