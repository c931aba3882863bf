//! The one place that reads an algorithm's key into jsonwebtoken's keys, for verifying
//! ([`DecodingKey`]) and signing ([`EncodingKey`]) alike.

#[cfg(feature = "public-key")]
use jsonwebtoken::errors::Result as JwtResult;
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::{Algorithm, Error};

/// jsonwebtoken's two kinds of key, which it reads with constructors of the same names: a secret
/// for HMAC, PEM for the public-key algorithms.
pub(crate) trait JwtKey: Sized {
    fn from_secret(secret: &[u8]) -> Self;
    #[cfg(feature = "public-key")]
    fn from_rsa_pem(pem: &[u8]) -> JwtResult<Self>;
    #[cfg(feature = "public-key")]
    fn from_ec_pem(pem: &[u8]) -> JwtResult<Self>;
    #[cfg(feature = "public-key")]
    fn from_ed_pem(pem: &[u8]) -> JwtResult<Self>;
}

impl JwtKey for DecodingKey {
    fn from_secret(secret: &[u8]) -> Self {
        DecodingKey::from_secret(secret)
    }
    #[cfg(feature = "public-key")]
    fn from_rsa_pem(pem: &[u8]) -> JwtResult<Self> {
        DecodingKey::from_rsa_pem(pem)
    }
    #[cfg(feature = "public-key")]
    fn from_ec_pem(pem: &[u8]) -> JwtResult<Self> {
        DecodingKey::from_ec_pem(pem)
    }
    #[cfg(feature = "public-key")]
    fn from_ed_pem(pem: &[u8]) -> JwtResult<Self> {
        DecodingKey::from_ed_pem(pem)
    }
}

impl JwtKey for EncodingKey {
    fn from_secret(secret: &[u8]) -> Self {
        EncodingKey::from_secret(secret)
    }
    #[cfg(feature = "public-key")]
    fn from_rsa_pem(pem: &[u8]) -> JwtResult<Self> {
        EncodingKey::from_rsa_pem(pem)
    }
    #[cfg(feature = "public-key")]
    fn from_ec_pem(pem: &[u8]) -> JwtResult<Self> {
        EncodingKey::from_ec_pem(pem)
    }
    #[cfg(feature = "public-key")]
    fn from_ed_pem(pem: &[u8]) -> JwtResult<Self> {
        EncodingKey::from_ed_pem(pem)
    }
}

/// `key` read as `algorithm`'s key: the shared secret for HS256, which any bytes are, and a PEM
/// key for the others (the public key to verify, the private key to sign). Without the
/// `public-key` feature those others are refused here, before any token is looked at.
pub(crate) fn read<K: JwtKey>(algorithm: Algorithm, key: &[u8]) -> Result<K, Error> {
    // Every signature and verification needs a key made here, so this is early enough.
    #[cfg(not(feature = "public-key"))]
    crate::hs256::install();
    match algorithm {
        Algorithm::Hs256 => Ok(K::from_secret(key)),
        #[cfg(feature = "public-key")]
        Algorithm::Rs256 => pem(K::from_rsa_pem, key),
        #[cfg(feature = "public-key")]
        Algorithm::Es256 => pem(K::from_ec_pem, key),
        #[cfg(feature = "public-key")]
        Algorithm::EdDsa => pem(K::from_ed_pem, key),
        #[cfg(not(feature = "public-key"))]
        Algorithm::Rs256 | Algorithm::Es256 | Algorithm::EdDsa => {
            Err(Error::Unsupported(algorithm))
        }
    }
}

#[cfg(feature = "public-key")]
fn pem<K>(read: fn(&[u8]) -> JwtResult<K>, pem: &[u8]) -> Result<K, Error> {
    read(pem).map_err(|error| Error::Key(error.to_string()))
}

#[cfg(test)]
mod tests {
    use crate::{Algorithm, Error, SigningKey, Verifier};

    #[test]
    fn public_key_algorithms_are_refused_at_set_up_without_a_pem_key_or_their_feature() {
        for algorithm in [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa] {
            let verifier = Verifier::new(algorithm, b"not a PEM key").expect_err("no key");
            let signing = SigningKey::new(algorithm, b"not a PEM key").expect_err("no key");
            for error in [verifier, signing] {
                #[cfg(feature = "public-key")]
                assert!(matches!(error, Error::Key(_)), "{algorithm}: {error}");
                #[cfg(not(feature = "public-key"))]
                assert!(matches!(error, Error::Unsupported(refused) if refused == algorithm));
                #[cfg(not(feature = "public-key"))]
                assert_eq!(
                    error.to_string(),
                    format!(
                        "{algorithm} needs the `public-key` feature of broker-auth, which this \
                         build leaves out"
                    )
                );
            }
        }
    }
}
