//! [`Entry`]: a committed version as the engine shares it with every subscriber.

use std::sync::OnceLock;

use broker_storage::Version;
use bytes::Bytes;

/// A committed version, shared by reference between the latest-version map, the live channel
/// and every subscriber that receives it.
///
/// An entry also carries one slot for its wire encoding, so that a transport encodes each version
/// once, however many subscribers it is sent to (see [`Entry::encoded`]).
#[derive(Debug)]
pub struct Entry {
    version: Version,
    encoded: OnceLock<Bytes>,
}

impl Entry {
    pub(crate) fn new(version: Version) -> Entry {
        Entry { version, encoded: OnceLock::new() }
    }

    /// The version's id: its position in the database's commit order.
    pub fn id(&self) -> u64 {
        self.version.id
    }

    /// The event name.
    pub fn event(&self) -> &str {
        &self.version.event
    }

    /// Milliseconds since the Unix epoch at which the version was accepted.
    pub fn timestamp(&self) -> u64 {
        self.version.timestamp
    }

    /// The data as compact, single-line JSON text.
    pub fn data(&self) -> &str {
        &self.version.data
    }

    /// The stored version.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The wire encoding of this entry, computed by `encode` the first time it is asked for and
    /// shared by every later caller.
    ///
    /// A broker has one encoding per entry: every caller must pass an equivalent `encode`.
    pub fn encoded(&self, encode: impl FnOnce(&Version) -> Bytes) -> &Bytes {
        self.encoded.get_or_init(|| encode(&self.version))
    }
}
