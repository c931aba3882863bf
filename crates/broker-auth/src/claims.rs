//! What a token says: its [`Claims`] and their [`Scopes`].

use serde::{Deserialize, Serialize};

use crate::Pattern;

/// The claims of a broker token: the standard ones the broker checks, and its scopes.
///
/// ```json
/// {"sub": "alice", "exp": 1764282600,
///  "broker": {"insert": ["orders.*"], "events": ["orders.*", "user"], "audit": ["orders.*"]}}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was issued to; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, in seconds since the Unix epoch. Required.
    pub exp: u64,
    /// Not valid before, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, in seconds since the Unix epoch; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The audience; checked when the broker is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The issuer; checked when the broker is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// What the token may do.
    #[serde(default)]
    pub broker: Scopes,
}

/// Which events a token may insert, receive on `/events`, and read the audit log of. Each list
/// holds [`Pattern`]s; an empty list allows nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scopes {
    /// Events the token may insert.
    pub insert: Vec<Pattern>,
    /// Events the token may receive on `/events`.
    pub events: Vec<Pattern>,
    /// Events whose audit log the token may read.
    pub audit: Vec<Pattern>,
}
