//! [`Entry`]: a committed version as the engine shares it with every subscriber.

use std::fmt;
use std::sync::OnceLock;

use broker_storage::Version;
use bytes::Bytes;

/// A committed version, shared by reference between the latest-version map, the live channel's
/// window and every subscriber that receives it.
///
/// An entry also carries one slot for its wire encoding, so that a transport encodes each version
/// once, however many subscribers it is sent to (see [`Entry::encoded`]).
#[derive(Debug)]
pub struct Entry {
    version: Version,
    encoded: TransportEncoding,
}

/// The wire encoding of one entry, owned by the transport that serves the broker.
///
/// The engine never reads or fills it; it only carries it with the entry, because the entry is
/// the one thing every subscriber of a version shares. The contract, which
/// [`Entry::encoded`] states to its callers:
///
/// - one broker is served by one transport, whose wire format is the only one kept here;
/// - the encoding runs at most once per entry, however many subscribers ask for it at once;
/// - every caller passes an equivalent encoder, because whichever runs first decides the bytes
///   that every later caller gets.
struct TransportEncoding(OnceLock<Bytes>);

impl TransportEncoding {
    fn get_or_encode(&self, version: &Version, encode: impl FnOnce(&Version) -> Bytes) -> &Bytes {
        // `OnceLock` runs one initializer even when several callers race; the others wait for
        // its result, so no version is encoded twice.
        self.0.get_or_init(|| encode(version))
    }
}

impl fmt::Debug for TransportEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Entry {
    pub(crate) fn new(version: Version) -> Entry {
        Entry { version, encoded: TransportEncoding(OnceLock::new()) }
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

    /// The bytes of this entry that grow with the version: its event name and data.
    ///
    /// This is what the live window counts against its byte budget. The transport's encoding,
    /// once made, holds about as many bytes again; it is not counted, because it is made after
    /// the entry is sent live, and only if a subscriber asks for it.
    pub(crate) fn size(&self) -> usize {
        self.version.event.len() + self.version.data.len()
    }

    /// The wire encoding of this entry, computed by `encode` the first time it is asked for and
    /// shared by every later caller.
    ///
    /// This slot belongs to the one transport serving the broker; the engine itself never
    /// touches it. `encode` runs at most once per entry, even when subscribers ask at the same
    /// time, and whichever call runs it decides the bytes that every other caller gets. So every
    /// caller must pass an equivalent `encode`: a broker has one encoding per entry, and a
    /// second wire format cannot be cached here.
    pub fn encoded(&self, encode: impl FnOnce(&Version) -> Bytes) -> &Bytes {
        self.encoded.get_or_encode(&self.version, encode)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use broker_storage::{NewVersion, Version};
    use bytes::Bytes;

    use super::Entry;

    #[test]
    fn concurrent_callers_share_one_encoding() {
        let entry = Entry::new(NewVersion::new("user", 1, "{}").with_id(7));
        let runs = AtomicUsize::new(0);
        let (entry, runs) = (&entry, &runs);
        let encodings: Vec<Bytes> = std::thread::scope(|scope| {
            let callers: Vec<_> = (0..8)
                .map(|n| {
                    scope.spawn(move || {
                        let encode = |version: &Version| {
                            runs.fetch_add(1, Ordering::Relaxed);
                            Bytes::from(format!("{} {n}", version.id))
                        };
                        entry.encoded(encode).clone()
                    })
                })
                .collect();
            callers.into_iter().map(|caller| caller.join().expect("no panic")).collect()
        });
        assert_eq!(runs.load(Ordering::Relaxed), 1, "the encoder ran once");
        assert!(encodings.windows(2).all(|pair| pair[0] == pair[1]), "{encodings:?}");
        let later = entry.encoded(|_| Bytes::from_static(b"other"));
        assert_eq!(later.as_ptr(), encodings[0].as_ptr(), "a later caller gets the same buffer");
    }
}
