//! The journal: the file that makes an append durable with one small write and one `fdatasync`,
//! instead of a durable redb commit.
//!
//! A durable redb commit writes every page the batch touched in every table, then syncs them: for
//! a batch of a few dozen versions that is most of the cost of an insert. So an append writes its
//! versions, as one checksummed record, to the end of this file and syncs it, and is done; a later
//! round writes the same rows into redb without durability (`overlay.rs`: redb keeps them in
//! memory and in the file, but a crash may roll the file back to its last durable commit). Every
//! so often a **checkpoint** commits redb durably, which makes every record before it redundant,
//! and the journal starts over. Opening a store replays the records that redb lost in a crash.
//!
//! # Format
//!
//! The file `<database>.wal` sits beside the database file. Its first [`HEADER_LEN`] bytes are a
//! header: the magic bytes, the format, the database identity and the current **generation**,
//! with a CRC-32 of them. Records follow, back to back:
//!
//! ```text
//! record  = len: u32, crc: u32, generation: u64, payload (len bytes)   crc = CRC-32(generation, payload)
//! payload = count: u32, count × version
//! version = id: u64, timestamp: u64, event: bytes, data: bytes, key: bytes or none
//! bytes   = len: u32, len bytes          (none: u32::MAX, no bytes)
//! ```
//!
//! All integers are little-endian. The file is written full of zeros when it is created, so that
//! an append overwrites allocated blocks: `fdatasync` then has no file size to record, which
//! halves its cost on ext4. A checkpoint moves to the next generation and writes new records over
//! the old ones from the start: reading stops at the first record that is not of the header's
//! generation, so the old ones left behind it are never read as new.
//!
//! # Invariants
//!
//! - A record is synced before the append is answered, and before its rows are written into
//!   redb; so every acknowledged version is in redb's last durable commit or in a record of the
//!   current generation.
//! - The generation moves on only after a durable redb commit that holds every record of the old
//!   one.
//! - Only the last record can be torn, since each is written and synced before the next starts: a
//!   record that fails its checksum and is followed by another of its generation means damage, not
//!   a crash.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use broker_storage::{StorageError, Uuid, Version};

use crate::error::from_io;

mod direct;

use direct::{BLOCK, Direct};

/// The bytes at the start of the file before the records.
pub(crate) const HEADER_LEN: u64 = 4096;
/// The bytes before each record's payload: length, checksum, generation.
const RECORD_HEADER_LEN: usize = 16;
/// The magic bytes that open a journal.
const MAGIC: &[u8; 8] = b"BRKRWAL\0";
/// The layout described above.
const FORMAT: u32 = 1;
/// The bytes of the header that its checksum covers: magic, format, reserved, id, generation.
const HEADER_BODY_LEN: usize = 8 + 4 + 4 + 16 + 8;
/// The length that says "no key".
const NO_KEY: u32 = u32::MAX;

/// The size a journal is created with, and shrinks back to after a batch made it grow: 4 MiB.
const INITIAL_SIZE: u64 = 4 * 1024 * 1024;
/// A checkpoint is due once this many bytes of records are written (half the initial size, so
/// that a batch rarely has to grow the file)...
const CHECKPOINT_BYTES: u64 = INITIAL_SIZE / 2;
/// ...or this long after the last one, so that a restart after a crash replays little, and redb,
/// which cannot reuse the pages its commits free until a durable one, does not grow meanwhile.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// The largest record written directly (`direct.rs`). Larger ones, arrays of many versions,
/// went slower that way here (about a fifth fewer versions per second in arrays of 1,000) than
/// written to the page cache and synced.
const DIRECT_MAX: usize = 64 * 1024;

/// A version to store, as the journal records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) version: Version,
    /// The idempotency key it was stored under.
    pub(crate) key: Option<String>,
}

/// An open journal, ready to take the next record.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    database_id: Uuid,
    generation: u64,
    /// Where the next record goes.
    end: u64,
    /// The file's size: zeros from `end` up to it.
    size: u64,
    /// When the current generation started.
    started: Instant,
    /// The file opened for direct writes, where its file system takes them.
    direct: Option<Direct>,
}

/// How a failed write left the journal.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The record is not in the journal: nothing of it will be replayed.
    NotWritten(io::Error),
    /// The record may or may not be durable.
    Unknown(io::Error),
}

/// The journal's path for the database at `database`: the same name with `.wal` added.
pub(crate) fn path_of(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

impl Journal {
    /// Opens the journal of database `database_id` at `path`, creating it if it is missing, and
    /// returns it with the versions of its current generation whose ids are above `durable`, the
    /// last id of redb's durable commit: the versions to replay, in id order.
    ///
    /// The journal keeps its generation until [`restart`](Journal::restart), which the caller runs
    /// once the returned versions are durably in redb.
    pub(crate) fn open(
        path: &Path,
        database_id: Uuid,
        durable: u64,
    ) -> Result<(Journal, Vec<Entry>), StorageError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        let (mut journal, replay) = Journal::read(path, &options, database_id, durable)?;
        journal.direct = Direct::open(path);
        match replay {
            Some(replay) => Ok((journal, replay)),
            None => {
                // New, or created by a start that stopped before writing its header: it holds
                // nothing, since nothing is acknowledged before the header is synced.
                journal.create()?;
                Ok((journal, Vec::new()))
            }
        }
    }

    /// The versions that [`open`](Journal::open) would return, without writing anything: none
    /// when there is no journal at `path`.
    pub(crate) fn inspect(
        path: &Path,
        database_id: Uuid,
        durable: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut options = OpenOptions::new();
        options.read(true);
        Ok(Journal::read(path, &options, database_id, durable)?.1.unwrap_or_default())
    }

    fn new(file: File, path: &Path, database_id: Uuid, size: u64) -> Journal {
        Journal {
            file,
            path: path.to_path_buf(),
            database_id,
            generation: 0,
            end: HEADER_LEN,
            size,
            started: Instant::now(),
            direct: None,
        }
    }

    /// Opens the journal at `path` with `options` and reads it: the versions to replay, or `None`
    /// when it has no header yet.
    fn read(
        path: &Path,
        options: &OpenOptions,
        database_id: Uuid,
        durable: u64,
    ) -> Result<(Journal, Option<Vec<Entry>>), StorageError> {
        let file = options.open(path).map_err(|error| io_error(path, "open", error))?;
        let size = file.metadata().map_err(|error| io_error(path, "read", error))?.len();
        let header = read_header(&file, size).map_err(|error| io_error(path, "read", error))?;
        let mut journal = Journal::new(file, path, database_id, size);
        let Some(header) = header else { return Ok((journal, None)) };
        let (id, generation) = decode_header(&header).map_err(|why| journal.damaged(&why))?;
        if id != database_id {
            return Err(journal
                .damaged(&format!("it belongs to database {}, not {database_id}", id.simple())));
        }
        journal.generation = generation;
        let (entries, end) = journal.read_records()?;
        journal.end = end;
        let replay: Vec<Entry> =
            entries.into_iter().filter(|entry| entry.version.id > durable).collect();
        // redb's ids have no holes: the journal must pick up right where the database ends.
        if let Some(first) = replay.first().filter(|first| first.version.id - 1 != durable) {
            return Err(journal.damaged(&format!(
                "its versions resume at id {} but the database ends at {durable}",
                first.version.id
            )));
        }
        Ok((journal, Some(replay)))
    }

    /// Writes a new, empty journal of the initial size, and syncs it and its directory.
    fn create(&mut self) -> Result<(), StorageError> {
        let zeros = vec![0; usize::try_from(INITIAL_SIZE).unwrap_or(usize::MAX)];
        self.file.set_len(0).map_err(|error| self.io_error("truncate", error))?;
        self.file.write_all_at(&zeros, 0).map_err(|error| self.io_error("write", error))?;
        self.size = INITIAL_SIZE;
        self.generation = 1;
        self.write_header()?;
        if let Some(directory) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The file's name must survive a crash as well as its bytes.
            File::open(directory)
                .and_then(|directory| directory.sync_all())
                .map_err(|error| self.io_error("sync the directory of", error))?;
        }
        Ok(())
    }

    /// Starts the next generation: called after a durable redb commit that holds every record of
    /// the current one, which are then never replayed.
    ///
    /// On an error the journal must be opened again: what its header holds is not known.
    pub(crate) fn restart(&mut self) -> Result<(), StorageError> {
        if self.size > INITIAL_SIZE {
            // A large batch grew the file; give the space back.
            self.file.set_len(INITIAL_SIZE).map_err(|error| self.io_error("truncate", error))?;
            self.size = INITIAL_SIZE;
        }
        self.generation += 1;
        self.write_header()?;
        self.end = HEADER_LEN;
        if let Some(direct) = &mut self.direct {
            direct.forget();
        }
        self.started = Instant::now();
        Ok(())
    }

    /// Whether a checkpoint should come before a record of `len` bytes: the journal holds enough,
    /// or is old enough, or the record would not fit.
    pub(crate) fn checkpoint_due(&self, len: u64) -> bool {
        self.end > HEADER_LEN
            && (self.end - HEADER_LEN >= CHECKPOINT_BYTES
                || self.started.elapsed() >= CHECKPOINT_INTERVAL
                || self.end + len > self.size)
    }

    /// The generation new records belong to.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The bytes of records written since the last checkpoint.
    pub(crate) fn pending(&self) -> u64 {
        self.end - HEADER_LEN
    }

    /// Appends `record` (from [`Record::finish`]) and syncs it: once this returns `Ok`, its
    /// versions are durable. A record up to [`DIRECT_MAX`] goes straight to the device where the
    /// file system allows it (`direct.rs`); others go through the page cache and `fdatasync`.
    pub(crate) fn write(&mut self, record: &[u8]) -> Result<(), WriteError> {
        let needed = self.end + record.len() as u64;
        if needed > self.size {
            // Only a batch larger than the whole journal gets here (a checkpoint came first
            // otherwise): grow the file with zeros, to a whole block, so that the record lands
            // on allocated blocks like every other.
            let size = needed.div_ceil(BLOCK) * BLOCK;
            let zeros = vec![0; usize::try_from(size - self.size).unwrap_or(usize::MAX)];
            self.file.write_all_at(&zeros, self.size).map_err(WriteError::NotWritten)?;
            self.size = size;
        }
        if let Some(direct) = &mut self.direct {
            if record.len() <= DIRECT_MAX {
                let written = direct.write(&self.file, record, self.end);
                return written.map_err(|error| self.unwritten(error));
            }
            direct.forget();
        }
        self.file.write_all_at(record, self.end).map_err(|error| self.unwritten(error))?;
        self.file.sync_data().map_err(|error| self.unwritten(error))?;
        Ok(())
    }

    /// Moves past the record just written.
    pub(crate) fn advance(&mut self, len: usize) {
        self.end += len as u64;
    }

    /// Takes back the record just written, whose write failed: its header is zeroed, which ends
    /// the journal before it.
    pub(crate) fn erase(&mut self) -> io::Result<()> {
        if let Some(direct) = &mut self.direct {
            direct.forget();
        }
        self.file.write_all_at(&[0; RECORD_HEADER_LEN], self.end)?;
        self.file.sync_data()
    }

    /// Deletes the journal of a database that was closed cleanly: after a durable commit, it
    /// holds nothing redb lacks.
    pub(crate) fn remove(self) -> Result<(), StorageError> {
        std::fs::remove_file(&self.path).map_err(|error| io_error(&self.path, "remove", error))
    }

    /// The answer to a failed write: the record is erased if it can be, or its fate is unknown.
    fn unwritten(&mut self, error: io::Error) -> WriteError {
        // After a failed sync the kernel may have dropped the record's pages, or kept them:
        // only overwriting the header with zeros, synced, settles that it will not be replayed.
        match self.erase() {
            Ok(()) => WriteError::NotWritten(error),
            Err(_) => WriteError::Unknown(error),
        }
    }

    fn write_header(&mut self) -> Result<(), StorageError> {
        let header = encode_header(self.database_id, self.generation);
        self.file.write_all_at(&header, 0).map_err(|error| self.io_error("write", error))?;
        self.file.sync_data().map_err(|error| self.io_error("sync", error))
    }

    /// Reads the records of the current generation from the start, and returns their versions
    /// and where the next record goes.
    fn read_records(&self) -> Result<(Vec<Entry>, u64), StorageError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut at = HEADER_LEN;
        loop {
            let record = match self.read_record(at) {
                Ok(Some(record)) => record,
                Ok(None) => return Ok((entries, at)),
                Err(ReadError::Io(error)) => return Err(self.io_error("read", error)),
                Err(ReadError::Damaged(why)) => {
                    return Err(self.damaged(&format!("the record at byte {at} {why}")));
                }
            };
            let next = at + (RECORD_HEADER_LEN + record.len()) as u64;
            let decoded = decode_payload(&record)
                .map_err(|why| self.damaged(&format!("the record at byte {at} {why}")))?;
            for entry in decoded {
                let last = entries.last().map_or(0, |last| last.version.id);
                if entry.version.id <= last {
                    return Err(self.damaged(&format!(
                        "the record at byte {at} holds id {} after id {last}",
                        entry.version.id
                    )));
                }
                entries.push(entry);
            }
            at = next;
        }
    }

    /// The payload of the record of the current generation at `at`, or `None` where the journal
    /// ends: zeros, an older generation's record, or a torn last record.
    fn read_record(&self, at: u64) -> Result<Option<Vec<u8>>, ReadError> {
        let Some(header) = self.record_header(at)? else { return Ok(None) };
        let (len, crc) = header;
        let Some(end) = at.checked_add(RECORD_HEADER_LEN as u64 + u64::from(len)) else {
            return Ok(None);
        };
        if end > self.size {
            // Runs past the file: a record torn by a crash while the file grew.
            return Ok(None);
        }
        let mut payload = vec![0; len as usize];
        self.file.read_exact_at(&mut payload, at + RECORD_HEADER_LEN as u64)?;
        if checksum(self.generation, &payload) == crc {
            return Ok(Some(payload));
        }
        // A torn record is the last one; another record of this generation after it means the
        // bytes were damaged after they were synced.
        if self.record_header(end)?.is_some() {
            return Err(ReadError::Damaged("fails its checksum".into()));
        }
        Ok(None)
    }

    /// The length and checksum of a record of the current generation starting at `at`, or `None`.
    fn record_header(&self, at: u64) -> Result<Option<(u32, u32)>, ReadError> {
        if at + RECORD_HEADER_LEN as u64 > self.size {
            return Ok(None);
        }
        let mut header = [0; RECORD_HEADER_LEN];
        self.file.read_exact_at(&mut header, at)?;
        let [len, crc] = [0, 4].map(|i| u32::from_le_bytes(array(&header[i..])));
        let generation = u64::from_le_bytes(array(&header[8..]));
        Ok((generation == self.generation && len > 0).then_some((len, crc)))
    }

    fn damaged(&self, why: &str) -> StorageError {
        StorageError::Corrupt(format!("the journal {} is damaged: {why}", self.path.display()))
    }

    fn io_error(&self, action: &str, error: io::Error) -> StorageError {
        io_error(&self.path, action, error)
    }
}

/// Why a record could not be read.
enum ReadError {
    Io(io::Error),
    Damaged(String),
}

impl From<io::Error> for ReadError {
    fn from(error: io::Error) -> ReadError {
        ReadError::Io(error)
    }
}

/// The record of one batch.
pub(crate) struct Record {
    bytes: Vec<u8>,
    count: u32,
}

impl Record {
    /// An empty record with room for `len` bytes (see [`record_len`]).
    pub(crate) fn with_capacity(len: usize) -> Record {
        let mut bytes = Vec::with_capacity(len);
        bytes.resize(RECORD_HEADER_LEN + 4, 0);
        Record { bytes, count: 0 }
    }

    /// Adds a version stored under `key`.
    pub(crate) fn push(
        &mut self,
        id: u64,
        timestamp: u64,
        event: &str,
        data: &str,
        key: Option<&str>,
    ) {
        self.bytes.extend_from_slice(&id.to_le_bytes());
        self.bytes.extend_from_slice(&timestamp.to_le_bytes());
        push_bytes(&mut self.bytes, event.as_bytes());
        push_bytes(&mut self.bytes, data.as_bytes());
        match key {
            Some(key) => push_bytes(&mut self.bytes, key.as_bytes()),
            None => self.bytes.extend_from_slice(&NO_KEY.to_le_bytes()),
        }
        self.count += 1;
    }

    /// Whether no version was added: nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished record of `generation`, ready to write.
    pub(crate) fn finish(mut self, generation: u64) -> Vec<u8> {
        let payload_start = RECORD_HEADER_LEN;
        self.bytes[payload_start..payload_start + 4].copy_from_slice(&self.count.to_le_bytes());
        let len = u32::try_from(self.bytes.len() - payload_start).unwrap_or(u32::MAX);
        let crc = checksum(generation, &self.bytes[payload_start..]);
        self.bytes[0..4].copy_from_slice(&len.to_le_bytes());
        self.bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        self.bytes[8..16].copy_from_slice(&generation.to_le_bytes());
        self.bytes
    }
}

/// The largest record a batch of these versions can need: every one of them stored.
pub(crate) fn record_len<'a>(
    versions: impl Iterator<Item = (&'a str, &'a str, Option<&'a str>)>,
) -> u64 {
    let mut len = (RECORD_HEADER_LEN + 4) as u64;
    for (event, data, key) in versions {
        len += 8 + 8 + 4 * 3 + (event.len() + data.len() + key.map_or(0, str::len)) as u64;
    }
    len
}

fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Event names, data and keys are bounded far below 4 GiB by every caller.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn checksum(generation: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&generation.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn encode_header(database_id: Uuid, generation: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_BODY_LEN + 4);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(&0_u32.to_le_bytes());
    header.extend_from_slice(database_id.as_bytes());
    header.extend_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    header
}

/// The header's bytes, or `None` for a file too short to hold one or whose header is all zeros:
/// a journal being created.
fn read_header(file: &File, size: u64) -> io::Result<Option<[u8; HEADER_BODY_LEN + 4]>> {
    let mut header = [0; HEADER_BODY_LEN + 4];
    if size < HEADER_LEN {
        return Ok(None);
    }
    file.read_exact_at(&mut header, 0)?;
    Ok(header.iter().any(|&byte| byte != 0).then_some(header))
}

/// The database id and generation of a header.
fn decode_header(header: &[u8; HEADER_BODY_LEN + 4]) -> Result<(Uuid, u64), String> {
    let (body, crc) = header.split_at(HEADER_BODY_LEN);
    if &body[..8] != MAGIC {
        return Err("it is not a broker journal".into());
    }
    if crc32fast::hash(body) != u32::from_le_bytes(array(crc)) {
        return Err("its header fails its checksum".into());
    }
    let format = u32::from_le_bytes(array(&body[8..]));
    if format != FORMAT {
        return Err(format!("it has format {format}, and this build reads only {FORMAT}"));
    }
    let id = Uuid::from_bytes(array(&body[16..]));
    Ok((id, u64::from_le_bytes(array(&body[32..]))))
}

/// The versions of a record's payload, whose checksum held.
fn decode_payload(payload: &[u8]) -> Result<Vec<Entry>, String> {
    let mut reader = Reader { bytes: payload };
    let count = reader.u32()?;
    let mut entries = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let id = reader.u64()?;
        let timestamp = reader.u64()?;
        let event = reader.string()?.ok_or("holds a version without an event")?;
        let data = reader.string()?.ok_or("holds a version without data")?;
        let key = reader.string()?;
        entries.push(Entry { version: Version { id, event, timestamp, data }, key });
    }
    if !reader.bytes.is_empty() {
        return Err("has bytes after its last version".into());
    }
    Ok(entries)
}

/// Reads a payload front to back.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], String> {
        if self.bytes.len() < len {
            return Err("ends in the middle of a version".into());
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.take(4).map(|bytes| u32::from_le_bytes(array(bytes)))
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.take(8).map(|bytes| u64::from_le_bytes(array(bytes)))
    }

    /// A string, or `None` for the "no key" length.
    fn string(&mut self) -> Result<Option<String>, String> {
        let len = self.u32()?;
        if len == NO_KEY {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| "holds text that is not UTF-8".into())
    }
}

/// The first `N` bytes of `bytes`, which the caller made sure are there.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// An I/O error on the journal at `path`: [`StorageError::Full`] when the device is out of space,
/// as for the database file.
fn io_error(path: &Path, action: &str, error: io::Error) -> StorageError {
    let message = format!("cannot {action} the journal {}: {error}", path.display());
    match from_io(error) {
        StorageError::Full(_) => StorageError::Full(message),
        _ => StorageError::backend(message),
    }
}
