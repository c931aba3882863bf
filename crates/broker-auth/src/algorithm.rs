//! [`Algorithm`]: the signature algorithms a broker can be configured with.

use std::fmt;

/// The signature algorithms the broker accepts; one is chosen in configuration, and a token
/// signed with any other (`none` included) is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC with SHA-256 and a shared secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Algorithm {
    /// Parses `HS256`, `RS256`, `ES256` or `EdDSA` (any case).
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name.to_ascii_uppercase().as_str() {
            "HS256" => Some(Algorithm::Hs256),
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            "EDDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    /// The algorithm's name in a token's header (`alg`): `HS256`, `RS256`, `ES256` or `EdDSA`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Algorithm> for jsonwebtoken::Algorithm {
    fn from(algorithm: Algorithm) -> jsonwebtoken::Algorithm {
        match algorithm {
            Algorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Algorithm;

    #[test]
    fn names_parse_in_any_case_and_round_trip() {
        for algorithm in [Algorithm::Hs256, Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa] {
            assert_eq!(Algorithm::parse(algorithm.name()), Some(algorithm));
            assert_eq!(Algorithm::parse(&algorithm.name().to_lowercase()), Some(algorithm));
        }
        for bad in ["", "none", "HS384", "RS 256"] {
            assert_eq!(Algorithm::parse(bad), None, "{bad:?}");
        }
    }
}
