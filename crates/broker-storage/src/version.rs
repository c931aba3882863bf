//! The records a backend stores.
//!
//! A version's event name and data are shared strings (`Arc<str>`): a version is held at once by
//! the engine's answer to its inserter, by the backend's memory until it is written, by every
//! tail that delivers it and by the subscribers' entries, and each of them clones it. A clone
//! counts a reference; it copies no text.

use std::sync::Arc;

/// A version a publisher wants stored: the event it belongs to, when it was accepted and its data.
///
/// A backend never changes these fields; it only adds an id (see [`Version`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVersion {
    /// The event name. Backends store it byte for byte and compare it exactly.
    pub event: Arc<str>,
    /// Milliseconds since the Unix epoch, taken by the engine when the version was accepted.
    pub timestamp: u64,
    /// The data as compact JSON text. Backends treat it as an opaque string.
    pub data: Arc<str>,
    /// The publisher's idempotency key, if it gave one: a retry that carries the same key within
    /// the backend's idempotency window is answered with the version the first try stored, and
    /// stores nothing (see [`Storage::append`](crate::Storage::append)). Not part of the stored
    /// [`Version`].
    pub idempotency_key: Option<String>,
}

impl NewVersion {
    /// Builds a new version from its parts, without an idempotency key.
    pub fn new(
        event: impl Into<Arc<str>>,
        timestamp: u64,
        data: impl Into<Arc<str>>,
    ) -> NewVersion {
        NewVersion { event: event.into(), timestamp, data: data.into(), idempotency_key: None }
    }

    /// This version, carrying the idempotency key `key`.
    pub fn with_idempotency_key(self, key: impl Into<String>) -> NewVersion {
        NewVersion { idempotency_key: Some(key.into()), ..self }
    }

    /// The stored version this becomes once a backend has given it `id`.
    pub fn with_id(self, id: u64) -> Version {
        Version { id, event: self.event, timestamp: self.timestamp, data: self.data }
    }
}

/// An immutable, durably stored version of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The position of this version in its database: unique, at least 1, and strictly greater
    /// than the id of every version committed before it, whatever its event.
    pub id: u64,
    /// The event name, exactly as it was inserted.
    pub event: Arc<str>,
    /// Milliseconds since the Unix epoch at which the version was accepted.
    pub timestamp: u64,
    /// The data as compact JSON text, exactly as it was inserted.
    pub data: Arc<str>,
}
