//! Journal writes that bypass the page cache: one `pwrite` through a descriptor opened with
//! `O_DIRECT | O_DSYNC` both writes a record and makes it durable.
//!
//! With the page cache, a record costs a `pwrite` into it, then an `fdatasync` that finds the
//! dirty pages, writes them back and flushes the device. Written directly, the record goes from
//! our buffer to the device in the one call. Direct writes must be aligned, in memory, offset and
//! length, so a record is written with the whole blocks around it: the start of its first block
//! (kept from the previous write, or read back) and zeros after it to the end of its last.
//!
//! A file system that refuses `O_DIRECT` (tmpfs) keeps the buffered write and `fdatasync`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// The alignment of direct writes: the page size, a multiple of every device's logical block.
pub(super) const BLOCK: u64 = 4096;

/// The journal's file opened for direct, synchronous writes.
pub(super) struct Direct {
    file: File,
    /// Where `tail` starts: the block holding the journal's end at the last write.
    tail_at: Option<u64>,
    /// The block at `tail_at` as last written.
    tail: Vec<u8>,
    /// Room for the blocks of a write, aligned on use.
    buffer: Vec<u8>,
}

impl Direct {
    /// Opens `path` for direct writes, or `None` where its file system does not take them.
    pub(super) fn open(path: &Path) -> Option<Direct> {
        let flags = OFlag::O_DIRECT | OFlag::O_DSYNC;
        let file = OpenOptions::new().write(true).custom_flags(flags.bits()).open(path).ok()?;
        Some(Direct { file, tail_at: None, tail: vec![0; BLOCK as usize], buffer: Vec::new() })
    }

    /// Writes `record` at `at` and returns once it is durable. `buffered` is the journal's
    /// buffered descriptor, to read back the start of the first block when it is not the one the
    /// last write left. The file must extend to the end of the record's last block.
    pub(super) fn write(&mut self, buffered: &File, record: &[u8], at: u64) -> io::Result<()> {
        let block = BLOCK as usize;
        let start = at - at % BLOCK;
        let end = at + record.len() as u64;
        let stop = end.div_ceil(BLOCK) * BLOCK;
        if self.tail_at != Some(start) {
            self.tail.fill(0);
            read_at_most(buffered, &mut self.tail, start)?;
            self.tail_at = Some(start);
        }
        let len = usize::try_from(stop - start).map_err(io::Error::other)?;
        self.buffer.resize(len + block, 0);
        let offset = self.buffer.as_ptr().align_offset(block);
        let blocks = &mut self.buffer[offset..offset + len];
        let prefix = usize::try_from(at - start).map_err(io::Error::other)?;
        blocks[..prefix].copy_from_slice(&self.tail[..prefix]);
        blocks[prefix..prefix + record.len()].copy_from_slice(record);
        blocks[prefix + record.len()..].fill(0);
        // A failure leaves the tail unknown: it is read back before the next write.
        self.tail_at = None;
        self.file.write_all_at(blocks, start)?;
        let last = end - end % BLOCK;
        let from = usize::try_from(last - start).map_err(io::Error::other)?;
        match blocks.get(from..from + block) {
            Some(tail) => self.tail.copy_from_slice(tail),
            // The record ends on a block boundary: the next one starts on fresh zeros.
            None => self.tail.fill(0),
        }
        self.tail_at = Some(last);
        Ok(())
    }

    /// Forgets the tail block, after the journal was written other than through `write`.
    pub(super) fn forget(&mut self) {
        self.tail_at = None;
    }
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct").field("tail_at", &self.tail_at).finish_non_exhaustive()
    }
}

/// Fills `buffer` from `file` at `at`, as far as the file goes.
fn read_at_most(file: &File, buffer: &mut [u8], at: u64) -> io::Result<()> {
    let mut read = 0;
    while read < buffer.len() {
        match file.read_at(&mut buffer[read..], at + read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory on the disk the workspace is on: `/tmp` may be a tmpfs, which refuses
    /// `O_DIRECT`.
    fn disk_dir() -> tempfile::TempDir {
        let parent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
        std::fs::create_dir_all(&parent).expect("create the target directory");
        tempfile::tempdir_in(parent).expect("create a temporary directory")
    }

    #[test]
    fn records_written_directly_read_back_byte_for_byte_whatever_their_alignment() {
        let dir = disk_dir();
        let path = dir.path().join("journal");
        let buffered =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path);
        let buffered = buffered.expect("create the file");
        // Old bytes after the end, as a checkpoint leaves them: direct writes zero what follows
        // each record in its last block.
        buffered.write_all_at(&[0xAA; 8 * BLOCK as usize], 0).expect("fill the file");
        let mut direct = Direct::open(&path).expect("a disk file takes direct writes");

        let mut expected = vec![0xAA; BLOCK as usize];
        let mut at = BLOCK;
        for (n, len) in [1, 100, 3995, 4096, 5000, 7].into_iter().enumerate() {
            let record: Vec<u8> = (0..len).map(|i| (n * 31 + i) as u8).collect();
            direct.write(&buffered, &record, at).expect("write");
            expected.extend_from_slice(&record);
            at += len as u64;
        }
        // The tail read back from the file after it was forgotten.
        direct.forget();
        direct.write(&buffered, b"last", at).expect("write after forgetting the tail");
        expected.extend_from_slice(b"last");

        let mut file = vec![0; 8 * BLOCK as usize];
        buffered.read_exact_at(&mut file, 0).expect("read the file back");
        assert!(file[..expected.len()] == expected[..], "every record as written");
        let block_end = expected.len().div_ceil(BLOCK as usize) * BLOCK as usize;
        assert!(file[expected.len()..block_end].iter().all(|&b| b == 0), "zeros after the end");
        assert!(file[block_end..].iter().all(|&b| b == 0xAA), "later blocks untouched");
    }
}
