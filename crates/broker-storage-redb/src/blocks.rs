//! The `blocks` table: the log of every version, in id order, a few kilobytes of versions per row.
//!
//! A block holds versions with increasing ids, from its first id `first`, which it records, up
//! to the id it is keyed by, `last`:
//!
//! ```text
//! key     = last: u64                       the id of the last version written into the block
//! block   = first: u64, entry, entry, ...   at least one entry
//! entry   = offset: u32, timestamp: u64, event: bytes, data: bytes     id = first + offset
//! bytes   = len: u32, len bytes of UTF-8
//! ```
//!
//! All integers are little-endian. A round writes its versions as blocks of up to
//! [`BLOCK_BYTES`], so a round of a few dozen versions costs a B-tree insert or two here, where a
//! row per version cost one each. The ranges `first..=last` of the blocks never overlap, and each
//! ends below the next one's start, so the only block that may hold an id is the first one keyed
//! at or above it: one descent of the B-tree, as for a row per version. A prune rewrites a block
//! without the versions it removes, under the same key and with the same `first`, and deletes a
//! block it empties: the ranges stay as they were.

use broker_storage::{StorageError, Version};
use redb::{ReadableTable, Table, TableDefinition};

use crate::error::{Fault, from_redb_write};

/// The log of every version, by the last id of each block.
pub(crate) const BLOCKS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("blocks");

/// The most bytes a block of several versions holds: with the header of redb's leaf, it fits one
/// 4 KiB page, so that reading one version reads one page. A larger version has a block of its
/// own.
pub(crate) const BLOCK_BYTES: usize = 4000;

/// The bytes of a block before its entries: its first id.
const BLOCK_HEADER: usize = 8;

/// The bytes of an entry besides its event and data: offset, timestamp, two lengths.
const ENTRY_FIXED: usize = 4 + 8 + 4 + 4;

/// The `blocks` table, open in a write transaction.
pub(crate) type Blocks<'txn> = Table<'txn, u64, &'static [u8]>;

/// A version as a block holds it, borrowed from the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row<'a> {
    pub(crate) id: u64,
    pub(crate) timestamp: u64,
    pub(crate) event: &'a str,
    pub(crate) data: &'a str,
}

impl<'a> Row<'a> {
    /// The row of `version`.
    pub(crate) fn of(version: &'a Version) -> Row<'a> {
        let Version { id, event, timestamp, data } = version;
        Row { id: *id, timestamp: *timestamp, event, data }
    }

    /// The version this row holds.
    pub(crate) fn to_version(self) -> Version {
        let Row { id, timestamp, event, data } = self;
        Version { id, event: event.into(), timestamp, data: data.into() }
    }
}

/// A block being built: its first id, the last id written into it, and its bytes.
#[derive(Debug)]
struct Open {
    first: u64,
    last: u64,
    bytes: Vec<u8>,
}

impl Open {
    fn new(first: u64) -> Open {
        let mut bytes = Vec::with_capacity(BLOCK_BYTES);
        bytes.extend_from_slice(&first.to_le_bytes());
        Open { first, last: first, bytes }
    }

    /// Whether `row` may join the block.
    fn takes(&self, row: &Row<'_>) -> bool {
        self.bytes.len() + ENTRY_FIXED + row.event.len() + row.data.len() <= BLOCK_BYTES
            && u32::try_from(row.id - self.first).is_ok()
    }

    fn push(&mut self, row: Row<'_>) {
        encode(&mut self.bytes, self.first, row);
        self.last = row.id;
    }
}

/// Writes `rows`, in id order above every id the table holds, as new blocks.
pub(crate) fn append<'a>(
    table: &mut Blocks<'_>,
    rows: impl IntoIterator<Item = Row<'a>>,
) -> Result<(), Fault> {
    let mut open: Option<Open> = None;
    for row in rows {
        let block = match &mut open {
            Some(block) if block.takes(&row) => block,
            open => {
                if let Some(block) = open.take() {
                    write(table, &block)?;
                }
                open.insert(Open::new(row.id))
            }
        };
        block.push(row);
    }
    match open {
        Some(block) => write(table, &block),
        None => Ok(()),
    }
}

fn write(table: &mut Blocks<'_>, block: &Open) -> Result<(), Fault> {
    table.insert(block.last, block.bytes.as_slice()).map_err(from_redb_write)?;
    Ok(())
}

fn encode(block: &mut Vec<u8>, first: u64, row: Row<'_>) {
    let offset = u32::try_from(row.id - first).expect("a block takes only ids near its first");
    block.extend_from_slice(&offset.to_le_bytes());
    block.extend_from_slice(&row.timestamp.to_le_bytes());
    for bytes in [row.event.as_bytes(), row.data.as_bytes()] {
        let len = u32::try_from(bytes.len()).expect("a version's event and data fit a u32");
        block.extend_from_slice(&len.to_le_bytes());
        block.extend_from_slice(bytes);
    }
}

/// The rows of the block stored under `key`, in id order; a block that does not decode, or
/// whose ids do not increase from its first id up to `key`, yields one error and ends.
pub(crate) fn rows(key: u64, block: &[u8]) -> Rows<'_> {
    let mut rest = block;
    // A block whose header is wrong is taken to start at its key, and fails on the first call.
    let (first, broken) = match take_array(&mut rest).map(u64::from_le_bytes) {
        Ok(first) if first > key => (key, Some("its first id is beyond its key")),
        Ok(_) if rest.is_empty() => (key, Some("it holds no version")),
        Ok(first) => (first, None),
        Err(_) => (key, Some("it is shorter than its header")),
    };
    Rows { key, first, rest, last: None, broken, failed: false }
}

/// The iterator of [`rows`].
#[derive(Debug)]
pub(crate) struct Rows<'a> {
    key: u64,
    first: u64,
    rest: &'a [u8],
    last: Option<u64>,
    /// What is wrong with the block's header, reported by the first call.
    broken: Option<&'static str>,
    failed: bool,
}

/// A version as a block holds it, its event and data not yet checked to be UTF-8: a reader
/// looking for one version checks only that one.
#[derive(Clone, Copy, Debug)]
struct Raw<'a> {
    id: u64,
    timestamp: u64,
    event: &'a [u8],
    data: &'a [u8],
}

impl<'a> Rows<'a> {
    /// The first id the block was written with: no version of an earlier block is at or above
    /// it.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// The next version, unchecked, or `None` at the end of the block.
    fn next_raw(&mut self) -> Option<Result<Raw<'a>, Fault>> {
        if let Some(why) = self.broken.take() {
            return Some(Err(self.damaged(why.to_owned())));
        }
        if self.rest.is_empty() || self.failed {
            return None;
        }
        Some(self.decode().map_err(|why| self.damaged(why)))
    }

    fn decode(&mut self) -> Result<Raw<'a>, String> {
        let offset = u32::from_le_bytes(take_array(&mut self.rest)?);
        let timestamp = u64::from_le_bytes(take_array(&mut self.rest)?);
        let event = take_bytes(&mut self.rest)?;
        let data = take_bytes(&mut self.rest)?;
        let id = self.first + u64::from(offset);
        if self.last.is_some_and(|last| id <= last) {
            return Err(format!("its ids do not increase at {id}"));
        }
        if id > self.key {
            return Err(format!("it holds id {id}, beyond its key"));
        }
        self.last = Some(id);
        Ok(Raw { id, timestamp, event, data })
    }

    /// `raw`, once its event and data are checked to be UTF-8.
    fn check(&mut self, raw: Raw<'a>) -> Result<Row<'a>, Fault> {
        let utf8 = |bytes| std::str::from_utf8(bytes).map_err(|_| "a string is not UTF-8");
        match (utf8(raw.event), utf8(raw.data)) {
            (Ok(event), Ok(data)) => Ok(Row { id: raw.id, timestamp: raw.timestamp, event, data }),
            (Err(why), _) | (_, Err(why)) => Err(self.damaged(why.to_owned())),
        }
    }

    fn damaged(&mut self, why: String) -> Fault {
        self.failed = true;
        StorageError::Corrupt(format!("the block of versions at {} is damaged: {why}", self.key))
            .into()
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = Result<Row<'a>, Fault>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.next_raw()? {
            Ok(raw) => self.check(raw),
            Err(fault) => Err(fault),
        })
    }
}

/// The version `id` among `rows`, if the block holds it.
fn find(mut rows: Rows<'_>, id: u64) -> Result<Option<Version>, Fault> {
    while let Some(raw) = rows.next_raw() {
        let raw = raw?;
        if raw.id >= id {
            return Ok(if raw.id == id { Some(rows.check(raw)?.to_version()) } else { None });
        }
    }
    Ok(None)
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if rest.len() < len {
        return Err(format!("it ends within an entry ({} bytes left of {len})", rest.len()));
    }
    let (taken, after) = rest.split_at(len);
    *rest = after;
    Ok(taken)
}

fn take_array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], String> {
    Ok(take(rest, N)?.try_into().expect("take returns N bytes"))
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = u32::from_le_bytes(take_array(rest)?) as usize;
    take(rest, len)
}

/// Reads versions by id from the `blocks` table, keeping the last block it read: reading the ids
/// of one event in order reads each of its blocks once.
pub(crate) struct Reader<'t, T: ReadableTable<u64, &'static [u8]>> {
    table: &'t T,
    map: fn(redb::StorageError) -> Fault,
    /// The last block read: the ids it covers, from its first to its key, and its bytes.
    cached: Option<(u64, u64, redb::AccessGuard<'t, &'static [u8]>)>,
}

impl<'t, T: ReadableTable<u64, &'static [u8]>> Reader<'t, T> {
    /// A reader of `table`, which maps redb's errors with `map`, as the transaction reading it
    /// requires.
    pub(crate) fn new(table: &'t T, map: fn(redb::StorageError) -> Fault) -> Reader<'t, T> {
        Reader { table, map, cached: None }
    }

    /// The version `id`, or `None` when it is not stored.
    pub(crate) fn get(&mut self, id: u64) -> Result<Option<Version>, Fault> {
        if let Some((first, key, block)) = &self.cached
            && (*first..=*key).contains(&id)
        {
            return find(rows(*key, block.value()), id);
        }
        self.cached = None;
        let found = self.table.range(id..).map_err(self.map)?.next();
        let Some((key, block)) = found.transpose().map_err(self.map)? else { return Ok(None) };
        let key = key.value();
        let rows = rows(key, block.value());
        let first = rows.first;
        let version = find(rows, id)?;
        self.cached = Some((first, key, block));
        Ok(version)
    }

    /// The version `id`, which the index `table` says exists.
    pub(crate) fn lookup(&mut self, id: u64, table: &str) -> Result<Version, Fault> {
        self.get(id)?.ok_or_else(|| {
            StorageError::Corrupt(format!("{table} names version {id}, which is missing")).into()
        })
    }
}

/// Up to `limit` versions with ids above `after`, in id order: a range scan from the block that
/// may hold the first id wanted.
pub(crate) fn since(
    table: &impl ReadableTable<u64, &'static [u8]>,
    after: u64,
    limit: usize,
    map: fn(redb::StorageError) -> Fault,
) -> Result<Vec<Version>, Fault> {
    let mut found = Vec::new();
    let Some(first) = after.checked_add(1) else { return Ok(found) };
    if limit == 0 {
        return Ok(found);
    }
    for entry in table.range(first..).map_err(map)? {
        let (key, block) = entry.map_err(map)?;
        let mut rows = rows(key.value(), block.value());
        while let Some(raw) = rows.next_raw() {
            let raw = raw?;
            if raw.id < first {
                continue;
            }
            found.push(rows.check(raw)?.to_version());
            if found.len() == limit {
                return Ok(found);
            }
        }
    }
    Ok(found)
}

/// The id of the last version in `table`, 0 when it is empty.
pub(crate) fn last_id(
    table: &impl ReadableTable<u64, &'static [u8]>,
    map: fn(redb::StorageError) -> Fault,
) -> Result<u64, Fault> {
    let Some((key, block)) = table.last().map_err(map)? else { return Ok(0) };
    let mut last = None;
    for row in rows(key.value(), block.value()) {
        last = Some(row?.id);
    }
    last.ok_or_else(|| {
        StorageError::Corrupt(format!("the block of versions at {} is empty", key.value())).into()
    })
}

/// Removes the versions `ids`, given increasing, each of which is stored: rewrites each block
/// that holds some without them, or deletes it when none is left.
pub(crate) fn remove(table: &mut Blocks<'_>, ids: &[u64]) -> Result<(), Fault> {
    let mut ids = ids.iter().copied().peekable();
    while let Some(&id) = ids.peek() {
        let (key, kept, removed) = {
            let found = table.range(id..).map_err(from_redb_write)?.next();
            let Some((key, block)) = found.transpose().map_err(from_redb_write)? else {
                return Err(missing(id));
            };
            let key = key.value();
            let mut rows = rows(key, block.value());
            let mut kept = Vec::with_capacity(block.value().len());
            kept.extend_from_slice(&rows.first.to_le_bytes());
            let mut removed = 0;
            while let Some(row) = rows.next() {
                let row = row?;
                if ids.next_if_eq(&row.id).is_some() {
                    removed += 1;
                } else {
                    encode(&mut kept, rows.first, row);
                }
            }
            (key, kept, removed)
        };
        if removed == 0 {
            return Err(missing(id));
        }
        if kept.len() == BLOCK_HEADER {
            table.remove(key).map_err(from_redb_write)?;
        } else {
            table.insert(key, kept.as_slice()).map_err(from_redb_write)?;
        }
    }
    Ok(())
}

fn missing(id: u64) -> Fault {
    StorageError::Corrupt(format!("version {id}, which a prune removes, is missing")).into()
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase, ReadableTableMetadata};

    use super::*;
    use crate::error::from_redb;

    fn version(id: u64, event: &str, data_len: usize) -> Version {
        Version {
            id,
            event: event.into(),
            timestamp: 1000 + id,
            data: "é".repeat(data_len / 2).into(),
        }
    }

    /// A redb file holding `versions` in blocks, appended a round at a time.
    fn database(dir: &tempfile::TempDir, rounds: &[&[Version]]) -> Database {
        let db = Database::create(dir.path().join("blocks.redb")).expect("create");
        for round in rounds {
            let txn = db.begin_write().expect("begin");
            append(&mut txn.open_table(BLOCKS).expect("open"), round.iter().map(Row::of))
                .expect("append");
            txn.commit().expect("commit");
        }
        db
    }

    fn all(db: &Database) -> Vec<Version> {
        let txn = db.begin_read().expect("read");
        since(&txn.open_table(BLOCKS).expect("open"), 0, usize::MAX, from_redb).expect("since")
    }

    fn block_count(db: &Database) -> u64 {
        db.begin_read().expect("read").open_table(BLOCKS).expect("open").len().expect("len")
    }

    #[test]
    fn a_round_of_small_versions_takes_a_few_blocks_and_reads_back_whole() {
        let dir = tempfile::tempdir().expect("dir");
        // 100 entries of 121 or 122 bytes: 32 fit in 4,000 bytes with the block's header, so
        // four blocks.
        let round: Vec<Version> =
            (1..=100).map(|id| version(id, ["a", "bb"][id as usize % 2], 100)).collect();
        let db = database(&dir, &[&round]);
        assert_eq!(block_count(&db), 4);
        assert_eq!(all(&db), round);

        let txn = db.begin_read().expect("read");
        let table = txn.open_table(BLOCKS).expect("open");
        assert_eq!(last_id(&table, from_redb).expect("last id"), 100);
        assert_eq!(since(&table, 41, 3, from_redb).expect("since"), round[41..44]);
        let mut reader = Reader::new(&table, from_redb);
        for id in [1, 2, 32, 33, 34, 100, 7] {
            assert_eq!(reader.get(id).expect("get"), Some(round[id as usize - 1].clone()));
        }
        assert_eq!(reader.get(101).expect("get"), None);
        assert_eq!(reader.get(0).expect("get"), None);
    }

    /// Asserts that `round` takes `count` blocks, and reads back whole.
    fn assert_takes_blocks(round: &[Version], count: u64) {
        let dir = tempfile::tempdir().expect("dir");
        let db = database(&dir, &[round]);
        assert_eq!(block_count(&db), count);
        assert_eq!(all(&db), round);
    }

    #[test]
    fn a_version_larger_than_a_block_has_one_of_its_own() {
        let round = [version(1, "a", 10), version(2, "a", 10_000), version(3, "a", 10)];
        assert_takes_blocks(&round, 3);
    }

    #[test]
    fn removing_versions_rewrites_their_blocks_and_deletes_an_emptied_one() {
        let dir = tempfile::tempdir().expect("dir");
        let rounds: Vec<Vec<Version>> = [1, 4, 7]
            .iter()
            .map(|&first| (first..first + 3).map(|id| version(id, "a", 10)).collect())
            .collect();
        let db = database(&dir, &[&rounds[0], &rounds[1], &rounds[2]]);
        assert_eq!(block_count(&db), 3);

        // The whole first block, and the last two of the second: its key, 6, stays.
        let txn = db.begin_write().expect("begin");
        remove(&mut txn.open_table(BLOCKS).expect("open"), &[1, 2, 3, 5, 6]).expect("remove");
        txn.commit().expect("commit");
        assert_eq!(block_count(&db), 2, "the first block was emptied");
        let kept: Vec<Version> = [&rounds[1][..1], &rounds[2][..]].concat().into_iter().collect();
        assert_eq!(all(&db), kept);
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(BLOCKS).expect("open");
        let mut reader = Reader::new(&table, from_redb);
        for id in 1..=9 {
            let expected = kept.iter().find(|version| version.id == id).cloned();
            assert_eq!(reader.get(id).expect("get"), expected, "version {id}");
        }
        assert_eq!(since(&table, 4, 2, from_redb).expect("since"), rounds[2][..2]);
        assert_eq!(last_id(&table, from_redb).expect("last id"), 9);

        let txn = db.begin_write().expect("begin");
        let error = remove(&mut txn.open_table(BLOCKS).expect("open"), &[5]).expect_err("gone");
        assert!(matches!(error.error, StorageError::Corrupt(_)), "{:?}", error.error);
    }

    #[test]
    fn ids_too_far_apart_for_one_block_start_another() {
        let far = 2 + u64::from(u32::MAX);
        assert_takes_blocks(&[version(1, "a", 10), version(far, "a", 10)], 2);
    }

    #[test]
    fn a_damaged_block_reads_as_corrupt_and_names_its_key() {
        let dir = tempfile::tempdir().expect("dir");
        let db = database(&dir, &[]);
        let mut block = 8_u64.to_le_bytes().to_vec();
        encode(&mut block, 8, Row::of(&version(8, "a", 10)));
        let whole = block.len();
        let with_first = |first: u64| [&first.to_le_bytes()[..], &block[8..]].concat();
        for (damage, why) in [
            (block[..whole - 1].to_vec(), "ends within an entry"),
            (block[..5].to_vec(), "shorter than its header"),
            (block[..8].to_vec(), "holds no version"),
            (with_first(9), "first id is beyond its key"),
            ([&block[..], &block[8..]].concat(), "ids do not increase"),
            // An offset of 1 from 8: id 9, past the key.
            ([&with_first(8)[..8], &[1], &block[9..]].concat(), "beyond its key"),
            // The data starts after the header, offset, timestamp, event and data length.
            ([&block[..29], &[0xff], &block[30..]].concat(), "not UTF-8"),
        ] {
            let txn = db.begin_write().expect("begin");
            txn.open_table(BLOCKS).expect("open").insert(8, damage.as_slice()).expect("insert");
            txn.commit().expect("commit");
            let txn = db.begin_read().expect("read");
            let table = txn.open_table(BLOCKS).expect("open");
            let error = since(&table, 0, usize::MAX, from_redb).expect_err("damaged");
            let message = error.error.to_string();
            assert!(matches!(error.error, StorageError::Corrupt(_)), "{message}");
            assert!(message.contains("at 8") && message.contains(why), "{why}: {message}");
        }
    }
}
