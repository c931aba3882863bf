//! [`Verifier`]: how tokens are verified, and what a request without one may do.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};

use crate::{Access, Algorithm, Claims, Error, Pattern, Refusal, key};

/// Verifies tokens, and says who a request is: [`Verifier::access`].
///
/// Built with [`Verifier::new`] and the builder methods; a verifier is only ever changed through
/// them, so that every setting is checked where it is made.
///
/// ```
/// use broker_auth::{Algorithm, Pattern, Verifier};
///
/// let verifier = Verifier::new(Algorithm::Hs256, b"a shared secret of 32 bytes or more")?
///     .audience("broker")
///     .cookie("broker_token")
///     .public_events([Pattern::new("news.*")]);
/// assert_eq!(verifier.cookie_name(), Some("broker_token"));
/// # Ok::<(), broker_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
    cookie: Option<String>,
    /// Shared with every anonymous [`Access`], which is made per request.
    public_events: Arc<[Pattern]>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is left out: for HS256 it is the shared secret.
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("cookie", &self.cookie)
            .field("public_events", &self.public_events)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Verifies tokens signed with `algorithm`, with `key`: the shared secret for HS256, the PEM
    /// public key for the others.
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Result<Verifier, Error> {
        let key = key::read(algorithm, key)?;
        let mut validation = Validation::new(algorithm.into());
        validation.validate_nbf = true;
        // A token is good until its expiry and not from then on (RFC 7519 4.1.4): the check is
        // `exp - 1 < now`, that is `exp <= now`, in whole seconds, with no leeway; clock skew is
        // the deployment's concern.
        validation.leeway = 0;
        validation.reject_tokens_expiring_in_less_than = 1;
        validation.validate_aud = false;
        Ok(Verifier { algorithm, key, validation, cookie: None, public_events: Arc::new([]) })
    }

    /// Verifies HS256 tokens with the shared `secret`: [`Verifier::new`] for the one algorithm
    /// that takes any bytes as its key, so it cannot fail.
    pub fn hs256(secret: &[u8]) -> Verifier {
        Verifier::new(Algorithm::Hs256, secret).expect("any bytes are an HS256 secret")
    }

    /// Requires tokens to carry this audience (`aud`).
    pub fn audience(mut self, audience: &str) -> Verifier {
        self.validation.validate_aud = true;
        self.validation.set_audience(&[audience]);
        // Added to the required claims, not set: the issuer's stays required whichever of the
        // two is configured first.
        self.validation.required_spec_claims.insert("aud".to_owned());
        self
    }

    /// Requires tokens to carry this issuer (`iss`).
    pub fn issuer(mut self, issuer: &str) -> Verifier {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".to_owned());
        self
    }

    /// Also reads tokens from the cookie `name`, for browsers' `EventSource`, which cannot set
    /// headers. Where the cookie is found is the transport's business; this is only its name.
    pub fn cookie(mut self, name: impl Into<String>) -> Verifier {
        self.cookie = Some(name.into());
        self
    }

    /// Lets requests without a token receive the events that `patterns` match on `/events`, and
    /// nothing else. Replaces any patterns set before.
    pub fn public_events(mut self, patterns: impl IntoIterator<Item = Pattern>) -> Verifier {
        self.public_events = patterns.into_iter().collect();
        self
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The cookie tokens are also read from, if any.
    pub fn cookie_name(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Who a request is, given the token it presented, if any.
    ///
    /// An invalid token is refused even where anonymous access would do: a client that sent one
    /// should learn that it is wrong.
    pub fn access(&self, token: Option<&str>) -> Result<Access, Refusal> {
        match token {
            Some(token) => Ok(Access::Token(Box::new(self.verify(token)?))),
            None => Ok(Access::Anonymous(Arc::clone(&self.public_events))),
        }
    }

    /// Verifies `token` and returns its claims, or [`Refusal::InvalidToken`] saying why not.
    pub fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        let error = match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => return Ok(data.claims),
            Err(error) => error,
        };
        let reason = match error.kind() {
            ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
            ErrorKind::InvalidSignature => "the token's signature is invalid".to_owned(),
            ErrorKind::InvalidAlgorithm => format!(
                "the token is not signed with {:?}, the algorithm this broker accepts",
                self.algorithm
            ),
            ErrorKind::InvalidAudience => "the token is for another audience".to_owned(),
            ErrorKind::InvalidIssuer => "the token is from another issuer".to_owned(),
            ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
            _ => format!("the token is malformed: {error}"),
        };
        Err(Refusal::InvalidToken(reason))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::Verifier;
    use crate::{Algorithm, Claims, Pattern, Refusal, Scopes, SigningKey};

    const SECRET: &[u8] = b"a unit test secret of 32 bytes or more";

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs()
    }

    /// Claims valid for an hour that may insert `orders.*`.
    fn claims() -> Claims {
        Claims {
            sub: Some("alice".into()),
            exp: now() + 3600,
            nbf: None,
            iat: Some(now()),
            aud: None,
            iss: None,
            broker: Scopes { insert: vec![Pattern::new("orders.*")], ..Scopes::default() },
        }
    }

    fn sign(claims: &Claims) -> String {
        SigningKey::new(Algorithm::Hs256, SECRET).expect("an HS256 key").sign(claims).expect("sign")
    }

    /// Checks that `verifier` refuses `token` with exactly `reason`.
    fn check_refused(verifier: &Verifier, token: &str, reason: &str) {
        match verifier.verify(token) {
            Err(Refusal::InvalidToken(actual)) => assert_eq!(actual, reason, "{token}"),
            other => panic!("{token}: expected the refusal {reason:?}, got {other:?}"),
        }
    }

    #[test]
    fn hs256_tokens_minted_with_the_secret_verify() {
        let verifier = Verifier::new(Algorithm::Hs256, SECRET).expect("an HS256 verifier");
        let claims = claims();
        assert_eq!(verifier.verify(&sign(&claims)), Ok(claims.clone()));
        let access = verifier.access(Some(&sign(&claims))).expect("a valid token");
        assert_eq!(access.may_insert("orders.a"), Ok(()));
        let with_shorthand = SigningKey::hs256(SECRET).sign(&claims).expect("sign");
        assert_eq!(Verifier::hs256(SECRET).verify(&with_shorthand), Ok(claims));
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let verifier = Verifier::hs256(SECRET);
        let good = sign(&claims());
        let other = SigningKey::hs256(b"another secret of at least 32 bytes").sign(&claims());
        check_refused(&verifier, &other.expect("sign"), "the token's signature is invalid");
        // The last character of a signature carries padding bits; change one in the middle.
        let (body, signature) = good.rsplit_once('.').expect("a compact JWT");
        let mut tampered = signature.to_owned().into_bytes();
        tampered[4] = if tampered[4] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{body}.{}", String::from_utf8(tampered).expect("base64url"));
        check_refused(&verifier, &tampered, "the token's signature is invalid");

        let expired = Claims { exp: now() - 1, ..claims() };
        check_refused(&verifier, &sign(&expired), "the token has expired");
        let early = Claims { nbf: Some(now() + 60), ..claims() };
        check_refused(&verifier, &sign(&early), "the token is not valid yet (nbf)");

        // The header of an HS384 token, `{"alg":"HS384","typ":"JWT"}`, on HS256 claims.
        let (_, rest) = good.split_once('.').expect("a compact JWT");
        let hs384 = format!("eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9.{rest}");
        let wrong_algorithm =
            "the token is not signed with Hs256, the algorithm this broker accepts";
        check_refused(&verifier, &hs384, wrong_algorithm);

        let Err(Refusal::InvalidToken(reason)) = verifier.verify("not-a-jwt") else {
            panic!("a malformed token must be refused");
        };
        assert!(reason.starts_with("the token is malformed: "), "{reason}");
    }

    #[test]
    fn audience_and_issuer_are_both_required_whichever_is_set_first() {
        let both = Claims { aud: Some("broker".into()), iss: Some("auth".into()), ..claims() };
        let verifiers = [
            Verifier::hs256(SECRET).audience("broker").issuer("auth"),
            Verifier::hs256(SECRET).issuer("auth").audience("broker"),
        ];
        for verifier in verifiers {
            assert_eq!(verifier.verify(&sign(&both)), Ok(both.clone()), "{verifier:?}");
            let no_aud = Claims { aud: None, ..both.clone() };
            check_refused(&verifier, &sign(&no_aud), "the token has no `aud` claim");
            let no_iss = Claims { iss: None, ..both.clone() };
            check_refused(&verifier, &sign(&no_iss), "the token has no `iss` claim");
            let other_aud = Claims { aud: Some("other".into()), ..both.clone() };
            check_refused(&verifier, &sign(&other_aud), "the token is for another audience");
            let other_iss = Claims { iss: Some("evil".into()), ..both.clone() };
            check_refused(&verifier, &sign(&other_iss), "the token is from another issuer");
        }
    }

    #[test]
    fn requests_without_a_token_get_the_public_events_only() {
        let verifier = Verifier::hs256(SECRET).cookie("t").public_events([Pattern::new("news.*")]);
        assert_eq!(verifier.cookie_name(), Some("t"));
        let anonymous = verifier.access(None).expect("no token is no error");
        assert!(anonymous.may_receive("news.today"));
        assert!(!anonymous.may_receive("orders.a"));
        assert_eq!(anonymous.may_insert("news.today"), Err(Refusal::MissingToken));
        // A bad token is refused, not treated as none.
        assert!(matches!(verifier.access(Some("x")), Err(Refusal::InvalidToken(_))));
    }
}
