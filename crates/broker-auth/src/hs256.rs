//! HS256 for builds without the `public-key` feature.
//!
//! jsonwebtoken signs and verifies through a process-wide `CryptoProvider`. Its own providers
//! come with its `rust_crypto` or `aws_lc_rs` features, and the RustCrypto one brings RSA, two
//! elliptic curves and Ed25519 along with HMAC. Without the `public-key` feature this crate
//! builds neither, and installs this provider instead: HS256 alone, on `hmac` and `sha2`.

use std::sync::Once;

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result as JwtResult, new_error};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::Sha256;

/// Installs the HS256 provider as jsonwebtoken's, once per process; later calls do nothing.
///
/// Called wherever this crate makes a key, which every signature and verification needs, so the
/// provider is in place before jsonwebtoken first looks for one.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means the program installed a provider of its own first. It stays: there can
        // be only one, and the program chose it, for HS256 too.
        let _ = PROVIDER.install_default();
    });
}

/// HS256 signing and verification; other algorithms and JSON Web Keys are not provided (the
/// verifier never asks for them: it accepts one algorithm, HS256 in builds without the feature).
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> JwtResult<Box<dyn JwtSigner>> {
    Ok(Box::new(Hs256::new(*algorithm, key.family(), key.as_bytes())?))
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> JwtResult<Box<dyn JwtVerifier>> {
    Ok(Box::new(Hs256::new(*algorithm, key.family(), key.try_get_as_bytes()?)?))
}

/// HMAC-SHA-256 keyed with the secret; each signature starts from a clone of it.
struct Hs256(Hmac<Sha256>);

impl Hs256 {
    fn new(algorithm: Algorithm, family: AlgorithmFamily, secret: &[u8]) -> JwtResult<Hs256> {
        if algorithm != Algorithm::HS256 {
            return Err(new_error(ErrorKind::UnsupportedAlgorithm));
        }
        if family != AlgorithmFamily::Hmac {
            return Err(new_error(ErrorKind::InvalidKeyFormat));
        }
        // HMAC takes a key of any length, so this does not fail in practice.
        let mac = Hmac::new_from_slice(secret).map_err(|_| ErrorKind::InvalidKeyFormat)?;
        Ok(Hs256(mac))
    }

    fn mac(&self, message: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(message);
        mac
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.mac(message).finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        // `verify_slice` compares in constant time. Its error says nothing more than "no match",
        // and jsonwebtoken turns any error here into `InvalidSignature`.
        self.mac(message).verify_slice(signature).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}
