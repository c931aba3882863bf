//! What a token says: [`Claims`] and their [`Scopes`], and [`SigningKey`] to mint tokens.

use serde::{Deserialize, Serialize};

use super::{Algorithm, AuthSetupError, Pattern};

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

/// A key that signs tokens: for development, tests and token services.
pub struct SigningKey {
    algorithm: Algorithm,
    key: jsonwebtoken::EncodingKey,
}

impl SigningKey {
    /// An HS256 key from a shared secret.
    pub fn hs256(secret: &[u8]) -> SigningKey {
        SigningKey {
            algorithm: Algorithm::Hs256,
            key: jsonwebtoken::EncodingKey::from_secret(secret),
        }
    }

    /// A public-key algorithm's private key, from PEM.
    pub fn from_private_pem(
        algorithm: Algorithm,
        pem: &[u8],
    ) -> Result<SigningKey, AuthSetupError> {
        let key = match algorithm {
            Algorithm::Hs256 => return Err(AuthSetupError::NeedsSecret),
            Algorithm::Rs256 => jsonwebtoken::EncodingKey::from_rsa_pem(pem),
            Algorithm::Es256 => jsonwebtoken::EncodingKey::from_ec_pem(pem),
            Algorithm::EdDsa => jsonwebtoken::EncodingKey::from_ed_pem(pem),
        }
        .map_err(|error| AuthSetupError::Key(error.to_string()))?;
        Ok(SigningKey { algorithm, key })
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthSetupError> {
        let header = jsonwebtoken::Header::new(self.algorithm.into());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|error| AuthSetupError::Key(error.to_string()))
    }
}
