//! The one place that reads an algorithm's key into jsonwebtoken's keys, for verifying
//! ([`DecodingKey`]) and signing ([`EncodingKey`]) alike.

use jsonwebtoken::errors::Result as JwtResult;
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::{Algorithm, Error};

/// jsonwebtoken's two kinds of key, which it reads with constructors of the same names: a secret
/// for HMAC, PEM for the public-key algorithms.
pub(crate) trait JwtKey: Sized {
    fn from_secret(secret: &[u8]) -> Self;
    fn from_rsa_pem(pem: &[u8]) -> JwtResult<Self>;
    fn from_ec_pem(pem: &[u8]) -> JwtResult<Self>;
    fn from_ed_pem(pem: &[u8]) -> JwtResult<Self>;
}

impl JwtKey for DecodingKey {
    fn from_secret(secret: &[u8]) -> Self {
        DecodingKey::from_secret(secret)
    }
    fn from_rsa_pem(pem: &[u8]) -> JwtResult<Self> {
        DecodingKey::from_rsa_pem(pem)
    }
    fn from_ec_pem(pem: &[u8]) -> JwtResult<Self> {
        DecodingKey::from_ec_pem(pem)
    }
    fn from_ed_pem(pem: &[u8]) -> JwtResult<Self> {
        DecodingKey::from_ed_pem(pem)
    }
}

impl JwtKey for EncodingKey {
    fn from_secret(secret: &[u8]) -> Self {
        EncodingKey::from_secret(secret)
    }
    fn from_rsa_pem(pem: &[u8]) -> JwtResult<Self> {
        EncodingKey::from_rsa_pem(pem)
    }
    fn from_ec_pem(pem: &[u8]) -> JwtResult<Self> {
        EncodingKey::from_ec_pem(pem)
    }
    fn from_ed_pem(pem: &[u8]) -> JwtResult<Self> {
        EncodingKey::from_ed_pem(pem)
    }
}

/// `key` read as `algorithm`'s key: the shared secret for HS256, which any bytes are, and a PEM
/// key for the others (the public key to verify, the private key to sign).
pub(crate) fn read<K: JwtKey>(algorithm: Algorithm, key: &[u8]) -> Result<K, Error> {
    let key = match algorithm {
        Algorithm::Hs256 => return Ok(K::from_secret(key)),
        Algorithm::Rs256 => K::from_rsa_pem(key),
        Algorithm::Es256 => K::from_ec_pem(key),
        Algorithm::EdDsa => K::from_ed_pem(key),
    };
    key.map_err(|error| Error::Key(error.to_string()))
}
