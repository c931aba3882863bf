//! Token authorization for the broker: signed JSON Web Tokens, verified and minted.
//!
//! With no [`Verifier`], a broker is open. With one, every route but the health checks needs a
//! valid token, whose [`Scopes`] say which events it may insert, receive and audit; anonymous
//! subscribers may receive the configured public events. [`Verifier::access`] turns a request's
//! token (or its absence) into an [`Access`], which answers each question a route asks, or a
//! [`Refusal`] that the transport turns into `401` or `403`. [`SigningKey`] mints tokens.
//!
//! This crate knows nothing of HTTP: where a request carries its token (a header, a cookie, the
//! query) is the transport's business.
//!
//! # Layout
//!
//! - `algorithm.rs`: [`Algorithm`], the signature algorithms and their names.
//! - `key.rs`: the one mapping from an algorithm and its key bytes to a key, for both sides.
//! - `verifier.rs`: [`Verifier`], built with builder methods; its reasons for refusing a token.
//! - `access.rs`: [`Access`], what a request may do.
//! - `signing.rs`: [`SigningKey`], which mints tokens.
//! - `claims.rs`: [`Claims`] and [`Scopes`], what a token says; `pattern.rs`: [`Pattern`].
//! - `error.rs`: [`Error`] (set-up) and [`Refusal`] (a request turned away).
//!
//! # Example
//!
//! ```
//! use broker_auth::{Algorithm, Claims, Pattern, Scopes, SigningKey, Verifier};
//!
//! let secret = b"a shared secret of 32 bytes or more";
//! let verifier = Verifier::new(Algorithm::Hs256, secret)?.audience("broker");
//! let claims = Claims {
//!     sub: Some("alice".into()),
//!     exp: 4_102_444_800, // 2100-01-01
//!     nbf: None,
//!     iat: None,
//!     aud: Some("broker".into()),
//!     iss: None,
//!     broker: Scopes { insert: vec![Pattern::new("orders.*")], ..Scopes::default() },
//! };
//! let token = SigningKey::new(Algorithm::Hs256, secret)?.sign(&claims)?;
//!
//! let access = verifier.access(Some(&token)).expect("a valid token");
//! assert!(access.may_insert("orders.created").is_ok());
//! assert!(access.may_insert("users.created").is_err());
//! # Ok::<(), broker_auth::Error>(())
//! ```

mod access;
mod algorithm;
mod claims;
mod error;
mod key;
mod pattern;
mod signing;
mod verifier;

pub use access::Access;
pub use algorithm::Algorithm;
pub use claims::{Claims, Scopes};
pub use error::{Error, Refusal};
pub use pattern::Pattern;
pub use signing::SigningKey;
pub use verifier::Verifier;
