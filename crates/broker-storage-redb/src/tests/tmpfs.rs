//! A small tmpfs mounted for one test: a real file system that fills up. Mounting needs root,
//! which the tests have here and in CI.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// A tmpfs mounted on a fresh temporary directory, unmounted when dropped, even by a test that
/// fails.
pub(super) struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `8m`).
    ///
    /// # Panics
    ///
    /// When `mount` fails, with a message that says the test needs root.
    pub(super) fn mount(size: &str) -> Tmpfs {
        let dir = super::temp_dir();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "this test needs root: it mounts a {size} tmpfs on {} to fill it up, and mount failed: \
             {}",
            dir.path().display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs { dir }
    }

    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A lazy unmount detaches the file system even while a failed test still holds a file
        // open in it; the memory is released when the last one closes.
        let unmounted = Command::new("umount").arg("--lazy").arg(self.dir.path()).status();
        if !unmounted.is_ok_and(|status| status.success()) {
            eprintln!("cannot unmount the tmpfs on {}", self.dir.path().display());
        }
    }
}
