//! Token settings: the flags that turn authorization on, and the `token` subcommand that mints
//! tokens from the same key.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker_auth::{Algorithm, Claims, Pattern, Scopes, SigningKey, Verifier};

use crate::Error;

/// Authorization flags. With neither a secret nor a key file, the broker is open.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Token signature algorithm: HS256 (shared secret), RS256, ES256 or EdDSA (key file).
    #[arg(long, env = "BROKER_JWT_ALG", default_value = "HS256", value_parser = parse_algorithm)]
    pub jwt_alg: Algorithm,

    /// HS256 shared secret; turns authorization on. Prefer the environment variable to the flag,
    /// which other users of the machine can see.
    #[arg(long, env = "BROKER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Key file; turns authorization on. For RS256, ES256 and EdDSA, the PEM public key that
    /// verifies tokens (the `token` subcommand takes the private key); for HS256, a file holding
    /// the secret.
    #[arg(long, env = "BROKER_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,

    /// Required token audience (`aud`).
    #[arg(long, env = "BROKER_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Required token issuer (`iss`).
    #[arg(long, env = "BROKER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
}

/// Flags of the server that only make sense with authorization on.
#[derive(Debug, Clone, clap::Args)]
pub struct AccessArgs {
    /// Read tokens from this cookie too, for browsers' EventSource, which cannot send headers.
    /// Needs explicit --allow-origin origins: credentials are never allowed for `*`.
    #[arg(long, env = "BROKER_JWT_COOKIE")]
    pub jwt_cookie: Option<String>,

    /// Events anyone may receive on /events without a token, as comma-separated patterns such
    /// as `news.*,status`.
    #[arg(long, env = "BROKER_PUBLIC_EVENTS", value_delimiter = ',')]
    pub public_events: Vec<String>,
}

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::parse(name)
        .ok_or_else(|| format!("{name:?} is not one of HS256, RS256, ES256, EdDSA"))
}

impl AuthArgs {
    /// The verification side: `None` when no secret or key is configured.
    pub(crate) fn verifier(&self) -> Result<Option<Verifier>, Error> {
        let Some(key) = self.key_material()? else { return Ok(None) };
        let mut verifier = Verifier::new(self.jwt_alg, &key)
            .map_err(|error| Error::Config(format!("--jwt-key-file: {error}")))?;
        if let Some(audience) = &self.jwt_audience {
            verifier = verifier.audience(audience);
        }
        if let Some(issuer) = &self.jwt_issuer {
            verifier = verifier.issuer(issuer);
        }
        Ok(Some(verifier))
    }

    /// The signing side, for the `token` subcommand.
    fn signer(&self) -> Result<SigningKey, Error> {
        let key = self.key_material()?.ok_or_else(|| {
            Error::Config(
                "no key to sign with: set BROKER_JWT_SECRET (HS256) or --jwt-key-file".into(),
            )
        })?;
        SigningKey::new(self.jwt_alg, &key)
            .map_err(|error| Error::Config(format!("--jwt-key-file (a private key): {error}")))
    }

    /// The secret (HS256) or the PEM key (the others) from the flags, as broker-auth reads it.
    fn key_material(&self) -> Result<Option<Vec<u8>>, Error> {
        match (&self.jwt_secret, &self.jwt_key_file) {
            (Some(_), Some(_)) => {
                Err(Error::Config("set either --jwt-secret or --jwt-key-file, not both".into()))
            }
            (Some(secret), None) if self.jwt_alg != Algorithm::Hs256 => Err(Error::Config(
                format!("--jwt-secret is for HS256; {:?} needs --jwt-key-file", self.jwt_alg),
            )),
            (Some(secret), None) if secret.len() < 32 => Err(Error::Config(
                "--jwt-secret must be at least 32 bytes long; generate one with \
                 `head -c 32 /dev/urandom | base64`"
                    .into(),
            )),
            (Some(secret), None) => Ok(Some(secret.clone().into_bytes())),
            (None, Some(path)) => std::fs::read(path).map(Some).map_err(|error| {
                Error::Config(format!("--jwt-key-file: cannot read {}: {error}", path.display()))
            }),
            (None, None) => Ok(None),
        }
    }
}

impl AccessArgs {
    /// `verifier` with the cookie and the public events these flags name.
    pub(crate) fn apply(&self, verifier: Verifier) -> Verifier {
        let verifier = verifier
            .public_events(self.public_events.iter().map(|pattern| Pattern::new(pattern.trim())));
        match &self.jwt_cookie {
            Some(cookie) => verifier.cookie(cookie.as_str()),
            None => verifier,
        }
    }
}

/// `broker-server token`: prints a signed token for the given scopes.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The key, as the server takes it (with a private key file for public-key algorithms).
    #[command(flatten)]
    pub key: AuthArgs,

    /// Events the token may insert (a pattern; repeat the flag for several).
    #[arg(long = "insert", value_name = "PATTERN")]
    pub insert: Vec<String>,

    /// Events the token may receive on /events.
    #[arg(long = "events", value_name = "PATTERN")]
    pub events: Vec<String>,

    /// Events whose audit log the token may read.
    #[arg(long = "audit", value_name = "PATTERN")]
    pub audit: Vec<String>,

    /// How long the token is valid, such as `1h` or `30m`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub expires_in: Duration,

    /// The subject (`sub`) of the token.
    #[arg(long)]
    pub sub: Option<String>,
}

impl TokenArgs {
    /// Signs the token these arguments describe.
    pub fn mint(&self) -> Result<String, Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let patterns = |list: &[String]| list.iter().map(|p| Pattern::new(p.as_str())).collect();
        let claims = Claims {
            sub: self.sub.clone(),
            exp: (now + self.expires_in).as_secs(),
            nbf: None,
            iat: Some(now.as_secs()),
            aud: self.key.jwt_audience.clone(),
            iss: self.key.jwt_issuer.clone(),
            broker: Scopes {
                insert: patterns(&self.insert),
                events: patterns(&self.events),
                audit: patterns(&self.audit),
            },
        };
        self.key.signer()?.sign(&claims).map_err(|error| Error::Config(error.to_string()))
    }
}
