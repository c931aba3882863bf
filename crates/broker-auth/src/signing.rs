//! [`SigningKey`]: mints tokens, for development, tests and token services.

use crate::{Algorithm, Claims, Error, key};

/// A key that signs tokens that a [`Verifier`](crate::Verifier) with the same algorithm and the
/// matching key accepts.
pub struct SigningKey {
    algorithm: Algorithm,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key itself is a secret.
        f.debug_struct("SigningKey").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Signs with `algorithm` and `key`: the shared secret for HS256, the PEM private key for
    /// the others.
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Result<SigningKey, Error> {
        Ok(SigningKey { algorithm, key: key::read(algorithm, key)? })
    }

    /// Signs with HS256 and the shared `secret`: [`SigningKey::new`] for the one algorithm that
    /// takes any bytes as its key, so it cannot fail.
    pub fn hs256(secret: &[u8]) -> SigningKey {
        SigningKey::new(Algorithm::Hs256, secret).expect("any bytes are an HS256 secret")
    }

    /// The algorithm tokens are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, Error> {
        let header = jsonwebtoken::Header::new(self.algorithm.into());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|error| Error::Key(error.to_string()))
    }
}
