//! The process's open-file limit, which every connection counts against.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft limit on open files to the hard limit, and returns the limit in force.
///
/// Each connection is a descriptor, so this limit caps the connections the server can hold;
/// the hard limit is the most an unprivileged process may ask for. `None` when the limits
/// cannot be read (the connection limits then keep their fixed defaults).
pub(crate) fn raise_open_files() -> Option<usize> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    Some(usize::try_from(soft).unwrap_or(usize::MAX))
}
