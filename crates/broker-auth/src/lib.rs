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
//! # Features
//!
//! - `public-key` (default): RS256, ES256 and EdDSA, through jsonwebtoken's RustCrypto backend.
//!   Without it only HS256 is built, on `hmac` and `sha2`, and the others are refused with
//!   [`Error::Unsupported`] when a key is made. That build installs its HS256 backend as
//!   jsonwebtoken's process-wide provider the first time a key is made, unless the program
//!   installed one of its own before.
//!
//! # Layout
//!
//! - `algorithm.rs`: [`Algorithm`], the signature algorithms and their names.
//! - `key.rs`: the one mapping from an algorithm and its key bytes to a key, for both sides.
//! - `hs256.rs`: without the `public-key` feature, the HS256 backend jsonwebtoken signs and
//!   verifies with.
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
#[cfg(not(feature = "public-key"))]
mod hs256;
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
