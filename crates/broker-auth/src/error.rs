//! [`Error`]: why authorization could not be set up; [`Refusal`]: why a request is turned away.

use crate::Algorithm;

/// Why authorization could not be set up, or a token could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key could not be read as the algorithm's key, or could not sign.
    #[error("invalid key: {0}")]
    Key(String),
    /// The algorithm is not part of this build: RS256, ES256 and EdDSA need the `public-key`
    /// feature.
    #[error("{0} needs the `public-key` feature of broker-auth, which this build leaves out")]
    Unsupported(Algorithm),
}

/// Why a request is turned away. The messages are written for the client, who sees them.
///
/// Exhaustive on purpose: each refusal has its own answer in the transport (`401` or `403`, and
/// the challenge that goes with it), and a new kind of refusal must not compile there until it
/// has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No token was presented, and the request needs one.
    #[error("no token was presented")]
    MissingToken,
    /// The token could not be verified; the reason says why.
    #[error("{0}")]
    InvalidToken(String),
    /// The token is valid but does not allow the request; the message names the event.
    #[error("{0}")]
    InsufficientScope(String),
}
