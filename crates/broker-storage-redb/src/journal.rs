//! The journal: the file that makes an append durable with one small write and one `fdatasync`,
//! instead of a durable redb commit.
//!
//! A durable redb commit writes every page the batch touched in every table, then syncs them: for
//! a batch of a few dozen versions that is most of the cost of an insert. So an append writes its
//! versions, as one checksummed record, to the end of this file and syncs it, and is done; a later
//! round writes the same rows into redb without durability (`overlay.rs`: redb keeps them in
//! memory and in the file, but a crash may roll the file back to its last durable commit). Every
//! so often a **checkpoint** commits redb durably, which makes every record before it redundant.
//! Opening a store replays the records that redb lost in a crash.
//!
//! Records are written in **generations**. When a checkpoint is due, the journal **switches**: the
//! current generation becomes the previous one, and the next records go to a new generation in
//! the other half of the file, while the checkpoint of the previous one runs off the appends'
//! path (`store.rs`); when its durable commit is done, the previous generation is **settled**, and
//! the next switch may write over it. So an append never waits for a checkpoint, unless one is
//! still running when the next is due and the current half is full.
//!
//! # Format
//!
//! The file `<database>.wal` sits beside the database file. Its first [`HEADER_LEN`] bytes are a
//! header: the magic bytes, the format, the database identity, the current generation and where
//! its records start, and the previous generation (0 for none) and where its records start, with
//! a CRC-32 of them. Each generation's records follow one another from where it starts:
//!
//! ```text
//! record  = len: u32, crc: u32, generation: u64, payload (len bytes)   crc = CRC-32(generation, payload)
//! payload = count: u32, count × version
//! version = id: u64, timestamp: u64, event: bytes, data: bytes, key: bytes or none
//! bytes   = len: u32, len bytes          (none: u32::MAX, no bytes)
//! ```
//!
//! All integers are little-endian. The file has two halves of [`HALF`] bytes after the header:
//! a generation starts at the beginning of one of them, the low one or the high one. The high
//! one starts after the low generation's end if that ran past its half, and grows the file as
//! far as its records need; the low one stops where the high one's live records begin. The file
//! is written full of zeros when it is created, so that an append overwrites allocated blocks:
//! `fdatasync` then has no file size to record, which halves its cost on ext4. Reading a
//! generation stops at the first record that is not of it, so the records of older generations
//! that a new one writes over are never read as new. Format 1, whose header names only a current
//! generation starting right after it, is still read.
//!
//! # Invariants
//!
//! - A record is synced before the append is answered, and before its rows are written into
//!   redb; so every acknowledged version is in redb's last durable commit or in a record of the
//!   current or the previous generation.
//! - A generation is dropped from the header, and its records written over, only after a durable
//!   redb commit that holds every record of it.
//! - Only the last record of a generation can be torn, since each is written and synced before
//!   the next starts: a record that fails its checksum and is followed by another of its
//!   generation means damage, not a crash.

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
const FORMAT: u32 = 2;
/// The format before it, whose header names one generation, starting at [`HEADER_LEN`].
const FORMAT_ONE: u32 = 1;
/// The bytes of the header that its checksum covers: magic, format, reserved, id, then the
/// current generation and its start, and the previous generation and its start.
const HEADER_BODY_LEN: usize = 8 + 4 + 4 + 16 + 4 * 8;
/// The same in format 1: magic, format, reserved, id, generation.
const HEADER_BODY_LEN_ONE: usize = 8 + 4 + 4 + 16 + 8;
/// The length that says "no key".
const NO_KEY: u32 = u32::MAX;

/// The bytes of each half of the file, where generations take turns: 4 MiB.
const HALF: u64 = 4 * 1024 * 1024;
/// The size a journal is created with, and shrinks back to after a batch made it grow.
const INITIAL_SIZE: u64 = HEADER_LEN + 2 * HALF;
/// A checkpoint is due once a generation holds this many bytes of records (half a half, so that
/// the records appended while its checkpoint runs rarely fill the rest)...
const CHECKPOINT_BYTES: u64 = HALF / 2;
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
    /// The generation new records belong to.
    current: Span,
    /// The generation before it, while the header names it.
    previous: Option<Previous>,
    /// Where the next record goes.
    end: u64,
    /// The file's size: zeros from `end` up to it.
    size: u64,
    /// When the current generation started.
    started: Instant,
    /// The file opened for direct writes, where its file system takes them.
    direct: Option<Direct>,
}

/// A generation, and where its records start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    generation: u64,
    start: u64,
}

/// The generation before the current one.
#[derive(Clone, Copy, Debug)]
struct Previous {
    span: Span,
    /// Where its records end.
    end: u64,
    /// The last id among its records, or before them.
    through: u64,
    /// Where its checkpoint stands.
    checkpoint: Stage,
}

/// Where the checkpoint of the previous generation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Not handed out yet, or handed out again after it failed.
    Waiting,
    /// Handed to a caller, which has not reported back.
    Running,
    /// A durable redb commit holds every record of the generation: the next switch may write
    /// over them.
    Settled,
}

/// The checkpoint that settles the journal's previous generation: a durable redb commit holding
/// every version up to `through`, its last id (`ops::settle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) generation: u64,
    pub(crate) through: u64,
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
    /// returns it with the versions of the generations its header names (the previous one, then
    /// the current one) whose ids are above `durable`, the last id of redb's durable commit: the
    /// versions to replay, in id order.
    ///
    /// The journal keeps its generations until [`restart`](Journal::restart), which the caller
    /// runs once the returned versions are durably in redb.
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
            current: Span { generation: 0, start: HEADER_LEN },
            previous: None,
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
        let header = decode_header(&header).map_err(|why| journal.damaged(&why))?;
        if header.database_id != database_id {
            return Err(journal.damaged(&format!(
                "it belongs to database {}, not {database_id}",
                header.database_id.simple()
            )));
        }
        let mut entries = Vec::new();
        if let Some(previous) = header.previous {
            let end = journal.read_records(previous, &mut entries)?;
            let through = entries.last().map_or(durable, |entry| entry.version.id);
            let checkpoint = Stage::Waiting;
            journal.previous = Some(Previous { span: previous, end, through, checkpoint });
        }
        journal.current = header.current;
        journal.end = journal.read_records(header.current, &mut entries)?;
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
        self.current = Span { generation: 1, start: HEADER_LEN };
        self.previous = None;
        self.write_header()?;
        if let Some(directory) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The file's name must survive a crash as well as its bytes.
            File::open(directory)
                .and_then(|directory| directory.sync_all())
                .map_err(|error| self.io_error("sync the directory of", error))?;
        }
        Ok(())
    }

    /// Starts the next generation at the start of the low half, and forgets the previous one:
    /// called after a durable redb commit that holds every record of both, which are then never
    /// replayed.
    ///
    /// On an error the journal must be opened again: what its header holds is not known.
    pub(crate) fn restart(&mut self) -> Result<(), StorageError> {
        if self.size > INITIAL_SIZE {
            // A large batch grew the file; give the space back.
            self.file.set_len(INITIAL_SIZE).map_err(|error| self.io_error("truncate", error))?;
            self.size = INITIAL_SIZE;
        }
        self.previous = None;
        self.start(HEADER_LEN)
    }

    /// Moves to the next generation, in the other half, and keeps the current one, whose last id
    /// is `through`, as the previous one until its checkpoint settles it: called when a
    /// checkpoint is due and [`can_switch`](Journal::can_switch) allows it.
    ///
    /// On an error the journal must be opened again: what its header holds is not known.
    pub(crate) fn switch(&mut self, through: u64) -> Result<(), StorageError> {
        let start = if self.current.start == HEADER_LEN {
            (self.end.div_ceil(BLOCK) * BLOCK).max(HEADER_LEN + HALF)
        } else {
            HEADER_LEN
        };
        let (span, end) = (self.current, self.end);
        self.previous = Some(Previous { span, end, through, checkpoint: Stage::Waiting });
        self.start(start)
    }

    /// The checkpoint the previous generation waits for, unless it is settled or already handed
    /// out: the caller runs it ([`ops::settle`](crate::ops::settle)) and reports with
    /// [`settle`](Journal::settle).
    pub(crate) fn take_checkpoint(&mut self) -> Option<Checkpoint> {
        let previous = self.previous.as_mut().filter(|p| p.checkpoint == Stage::Waiting)?;
        previous.checkpoint = Stage::Running;
        Some(Checkpoint { generation: previous.span.generation, through: previous.through })
    }

    /// Reports how the `checkpoint` handed out ended: once `committed`, the next switch may write
    /// over its generation; otherwise the next [`take_checkpoint`](Journal::take_checkpoint)
    /// hands it out again. A generation the journal has since forgotten (a restart came first)
    /// is ignored.
    pub(crate) fn settle(&mut self, checkpoint: Checkpoint, committed: bool) {
        if let Some(previous) = &mut self.previous
            && previous.span.generation == checkpoint.generation
        {
            previous.checkpoint = if committed { Stage::Settled } else { Stage::Waiting };
        }
    }

    /// Begins the generation after the current one at `start`, and writes the header that names
    /// it (and the previous one).
    fn start(&mut self, start: u64) -> Result<(), StorageError> {
        self.current = Span { generation: self.current.generation + 1, start };
        self.write_header()?;
        self.end = start;
        if let Some(direct) = &mut self.direct {
            direct.forget();
        }
        self.started = Instant::now();
        Ok(())
    }

    /// Whether a checkpoint should come before a record of `len` bytes: the current generation
    /// holds enough, or is old enough, or the record would not fit.
    pub(crate) fn checkpoint_due(&self, len: u64) -> bool {
        let written = self.end - self.current.start;
        !self.fits(len)
            || written > 0
                && (written >= CHECKPOINT_BYTES || self.started.elapsed() >= CHECKPOINT_INTERVAL)
    }

    /// Whether a record of `len` bytes fits after the current generation's end. In the low half,
    /// with the previous generation in the high one, it must end before that one starts;
    /// otherwise within a half of the generation's start, unless it is the generation's first
    /// (a batch larger than a half grows the file).
    pub(crate) fn fits(&self, len: u64) -> bool {
        match self.previous {
            Some(previous) if previous.span.start > self.current.start => {
                self.end + len <= previous.span.start
            }
            _ => self.end == self.current.start || self.end + len <= self.current.start + HALF,
        }
    }

    /// Whether [`switch`](Journal::switch) may run before a record of `len` bytes: the previous
    /// generation, if any, is settled, and the record will fit in the new one.
    pub(crate) fn can_switch(&self, len: u64) -> bool {
        match self.previous {
            Some(previous) if previous.checkpoint != Stage::Settled => false,
            // The next generation goes to the low half, up to the current one's start.
            _ if self.current.start != HEADER_LEN => HEADER_LEN + len <= self.current.start,
            _ => true,
        }
    }

    /// Where the next record goes.
    #[cfg(test)]
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Whether no generation waits for its checkpoint.
    #[cfg(test)]
    pub(crate) fn settled(&self) -> bool {
        self.previous.is_none_or(|previous| previous.checkpoint == Stage::Settled)
    }

    /// The generation new records belong to.
    pub(crate) fn generation(&self) -> u64 {
        self.current.generation
    }

    /// The bytes of records that a checkpoint would write into redb: those of the current
    /// generation, and of the previous one until it is settled.
    pub(crate) fn pending(&self) -> u64 {
        let previous = match self.previous {
            Some(previous) if previous.checkpoint != Stage::Settled => {
                previous.end - previous.span.start
            }
            _ => 0,
        };
        self.end - self.current.start + previous
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
        let header = Header {
            database_id: self.database_id,
            current: self.current,
            previous: self.previous.map(|previous| previous.span),
        }
        .encode();
        self.file.write_all_at(&header, 0).map_err(|error| self.io_error("write", error))?;
        self.file.sync_data().map_err(|error| self.io_error("sync", error))
    }

    /// Reads the records of generation `span` from its start, adds their versions to `entries`,
    /// and returns where its records end.
    fn read_records(&self, span: Span, entries: &mut Vec<Entry>) -> Result<u64, StorageError> {
        let mut at = span.start;
        loop {
            let record = match self.read_record(at, span.generation) {
                Ok(Some(record)) => record,
                Ok(None) => return Ok(at),
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

    /// The payload of the record of `generation` at `at`, or `None` where the generation ends:
    /// zeros, another generation's record, or a torn last record.
    fn read_record(&self, at: u64, generation: u64) -> Result<Option<Vec<u8>>, ReadError> {
        let Some(header) = self.record_header(at, generation)? else { return Ok(None) };
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
        if checksum(generation, &payload) == crc {
            return Ok(Some(payload));
        }
        // A torn record is the last one; another record of this generation after it means the
        // bytes were damaged after they were synced.
        if self.record_header(end, generation)?.is_some() {
            return Err(ReadError::Damaged("fails its checksum".into()));
        }
        Ok(None)
    }

    /// The length and checksum of a record of `generation` starting at `at`, or `None`.
    fn record_header(&self, at: u64, generation: u64) -> Result<Option<(u32, u32)>, ReadError> {
        if at + RECORD_HEADER_LEN as u64 > self.size {
            return Ok(None);
        }
        let mut header = [0; RECORD_HEADER_LEN];
        self.file.read_exact_at(&mut header, at)?;
        let [len, crc] = [0, 4].map(|i| u32::from_le_bytes(array(&header[i..])));
        let written = u64::from_le_bytes(array(&header[8..]));
        Ok((written == generation && len > 0).then_some((len, crc)))
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

/// What a journal's header says.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    database_id: Uuid,
    current: Span,
    previous: Option<Span>,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let previous = self.previous.unwrap_or(Span { generation: 0, start: 0 });
        let mut header = Vec::with_capacity(HEADER_BODY_LEN + 4);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT.to_le_bytes());
        header.extend_from_slice(&0_u32.to_le_bytes());
        header.extend_from_slice(self.database_id.as_bytes());
        for span in [self.current, previous] {
            header.extend_from_slice(&span.generation.to_le_bytes());
            header.extend_from_slice(&span.start.to_le_bytes());
        }
        let crc = crc32fast::hash(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        header
    }
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

/// What a header of format 2, or 1, says.
fn decode_header(header: &[u8; HEADER_BODY_LEN + 4]) -> Result<Header, String> {
    if &header[..8] != MAGIC {
        return Err("it is not a broker journal".into());
    }
    let format = u32::from_le_bytes(array(&header[8..]));
    let body_len = match format {
        FORMAT => HEADER_BODY_LEN,
        FORMAT_ONE => HEADER_BODY_LEN_ONE,
        _ => {
            return Err(format!(
                "it has format {format}, and this build reads only {FORMAT_ONE} and {FORMAT}"
            ));
        }
    };
    let (body, crc) = header.split_at(body_len);
    if crc32fast::hash(body) != u32::from_le_bytes(array(crc)) {
        return Err("its header fails its checksum".into());
    }
    let database_id = Uuid::from_bytes(array(&body[16..]));
    let span = |at: usize| Span {
        generation: u64::from_le_bytes(array(&body[at..])),
        start: u64::from_le_bytes(array(&body[at + 8..])),
    };
    if format == FORMAT_ONE {
        let generation = u64::from_le_bytes(array(&body[32..]));
        let current = Span { generation, start: HEADER_LEN };
        return Ok(Header { database_id, current, previous: None });
    }
    let (current, previous) = (span(32), span(48));
    let previous = (previous.generation != 0).then_some(previous);
    let well_placed = |span: Span| span.start >= HEADER_LEN && span.start.is_multiple_of(BLOCK);
    if !well_placed(current) || previous.is_some_and(|previous| !well_placed(previous)) {
        return Err("its header places a generation outside its records".into());
    }
    Ok(Header { database_id, current, previous })
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
        let (event, data) = (event.into(), data.into());
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
