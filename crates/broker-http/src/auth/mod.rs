//! Authorization by signed JSON Web Tokens.
//!
//! With no [`AuthConfig`], the broker is open. With one, every route but the health checks needs
//! a valid token, whose [`Scopes`] say which events it may insert, receive and audit; anonymous
//! subscribers may receive the configured public events. Tokens come from `Authorization:
//! Bearer`, a cookie (for `EventSource`, which cannot set headers), or the `access_token` query
//! parameter. Errors follow RFC 6750: `401` with `WWW-Authenticate` for a missing or invalid
//! token, `403` for a valid token without the scope.

mod claims;
mod pattern;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use headers::{Cookie, HeaderMapExt};
use http::{HeaderMap, Uri, header};

pub use claims::{Claims, Scopes, SigningKey};
pub use pattern::Pattern;

use crate::error::ApiError;

/// The query parameter a token may be sent in.
pub(crate) const QUERY_PARAMETER: &str = "access_token";

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

/// Why authorization could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    /// The key could not be read as the algorithm's key.
    #[error("invalid key: {0}")]
    Key(String),
    /// HS256 signs and verifies with a shared secret, not a key file.
    #[error("HS256 uses a shared secret, not a key file")]
    NeedsSecret,
}

/// How tokens are verified and where they are looked for.
#[derive(Clone)]
pub struct AuthConfig {
    algorithm: Algorithm,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    /// The cookie tokens are read from, if cookies are used.
    pub cookie: Option<String>,
    /// Events anyone may receive on `/events` without a token.
    pub public_events: Vec<Pattern>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithm", &self.algorithm)
            .field("cookie", &self.cookie)
            .field("public_events", &self.public_events)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// Verifies HS256 tokens with a shared secret.
    pub fn hs256(secret: &[u8]) -> AuthConfig {
        AuthConfig::new(Algorithm::Hs256, jsonwebtoken::DecodingKey::from_secret(secret))
    }

    /// Verifies tokens of a public-key `algorithm` with the public key in `pem`.
    pub fn from_public_pem(algorithm: Algorithm, pem: &[u8]) -> Result<AuthConfig, AuthSetupError> {
        let key = match algorithm {
            Algorithm::Hs256 => return Err(AuthSetupError::NeedsSecret),
            Algorithm::Rs256 => jsonwebtoken::DecodingKey::from_rsa_pem(pem),
            Algorithm::Es256 => jsonwebtoken::DecodingKey::from_ec_pem(pem),
            Algorithm::EdDsa => jsonwebtoken::DecodingKey::from_ed_pem(pem),
        }
        .map_err(|error| AuthSetupError::Key(error.to_string()))?;
        Ok(AuthConfig::new(algorithm, key))
    }

    fn new(algorithm: Algorithm, key: jsonwebtoken::DecodingKey) -> AuthConfig {
        let mut validation = jsonwebtoken::Validation::new(algorithm.into());
        validation.validate_nbf = true;
        // A token is good until its expiry and not from then on (RFC 7519 4.1.4): the check is
        // `exp - 1 < now`, that is `exp <= now`, in whole seconds, with no leeway; clock skew is
        // the deployment's concern.
        validation.leeway = 0;
        validation.reject_tokens_expiring_in_less_than = 1;
        validation.validate_aud = false;
        AuthConfig { algorithm, key, validation, cookie: None, public_events: Vec::new() }
    }

    /// Requires tokens to carry this audience (`aud`).
    pub fn audience(mut self, audience: &str) -> AuthConfig {
        self.validation.validate_aud = true;
        self.validation.set_audience(&[audience]);
        self.validation.set_required_spec_claims(&["exp", "aud"]);
        self
    }

    /// Requires tokens to carry this issuer (`iss`).
    pub fn issuer(mut self, issuer: &str) -> AuthConfig {
        self.validation.set_issuer(&[issuer]);
        let mut required: Vec<String> = self.validation.required_spec_claims.drain().collect();
        required.push("iss".into());
        self.validation.set_required_spec_claims(&required);
        self
    }

    /// Verifies `token` and returns its claims.
    fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(error) => {
                use jsonwebtoken::errors::ErrorKind;
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
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the token has no `{claim}` claim")
                    }
                    _ => format!("the token is malformed: {error}"),
                };
                Err(ApiError::InvalidToken(reason))
            }
        }
    }
}

/// Who is asking, as far as authorization goes.
#[derive(Clone, Debug)]
pub(crate) enum Access {
    /// The broker has no authorization configured: everything is allowed.
    Open,
    /// No token: only the public events may be received.
    Anonymous(Vec<Pattern>),
    /// A valid token.
    Token(Box<Claims>),
}

impl Access {
    /// Finds and verifies the request's token, if authorization is configured.
    ///
    /// An invalid token is an error even where anonymous access would do: a client that sent
    /// one should learn that it is wrong.
    pub(crate) fn of(
        auth: Option<&AuthConfig>,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Access, ApiError> {
        let Some(auth) = auth else { return Ok(Access::Open) };
        match find_token(auth, headers, uri)? {
            Some(token) => Ok(Access::Token(Box::new(auth.verify(&token)?))),
            None => Ok(Access::Anonymous(auth.public_events.clone())),
        }
    }

    /// Fails with `401` unless a token was presented (or authorization is off).
    pub(crate) fn require_token(&self) -> Result<(), ApiError> {
        match self {
            Access::Anonymous(_) => Err(ApiError::MissingToken),
            Access::Open | Access::Token(_) => Ok(()),
        }
    }

    pub(crate) fn may_insert(&self, event: &str) -> Result<(), ApiError> {
        self.check(event, "insert", |scopes| &scopes.insert)
    }

    pub(crate) fn may_audit(&self, event: &str) -> Result<(), ApiError> {
        self.check(event, "read the audit log of", |scopes| &scopes.audit)
    }

    /// Whether the event may be received on `/events`.
    pub(crate) fn may_receive(&self, event: &str) -> bool {
        match self {
            Access::Open => true,
            Access::Anonymous(public) => Pattern::any(public, event),
            Access::Token(claims) => Pattern::any(&claims.broker.events, event),
        }
    }

    /// When the token expires, if there is one.
    pub(crate) fn expires_at(&self) -> Option<SystemTime> {
        match self {
            Access::Token(claims) => Some(UNIX_EPOCH + Duration::from_secs(claims.exp)),
            Access::Open | Access::Anonymous(_) => None,
        }
    }

    fn check(
        &self,
        event: &str,
        action: &str,
        scope: impl Fn(&Scopes) -> &Vec<Pattern>,
    ) -> Result<(), ApiError> {
        match self {
            Access::Open => Ok(()),
            Access::Anonymous(_) => Err(ApiError::MissingToken),
            Access::Token(claims) if Pattern::any(scope(&claims.broker), event) => Ok(()),
            // The message names the event the client asked for, and nothing about whether it
            // exists.
            Access::Token(_) => Err(ApiError::InsufficientScope(format!(
                "the token may not {action} the event {event:?}"
            ))),
        }
    }
}

/// The token in the `Authorization` header, the cookie or the query, in that order.
fn find_token(
    auth: &AuthConfig,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<String>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        return match token {
            Some(token) => Ok(Some(token.to_owned())),
            None => Err(ApiError::InvalidToken(
                "the Authorization header must be `Bearer <token>`".into(),
            )),
        };
    }
    let cookie = auth.cookie.as_deref().and_then(|name| {
        headers.typed_get::<Cookie>().and_then(|cookies| cookies.get(name).map(str::to_owned))
    });
    if cookie.is_some() {
        return Ok(cookie);
    }
    let query = uri.query().unwrap_or_default().as_bytes();
    Ok(form_urlencoded::parse(query)
        .find(|(key, _)| key == QUERY_PARAMETER)
        .map(|(_, token)| token.into_owned()))
}
