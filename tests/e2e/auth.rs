//! Authorization by JSON Web Tokens: which requests a token (or its absence) lets through, where
//! tokens are read from, what the server logs, and the `token` subcommand that mints them.
//!
//! The helpers here craft tokens the way an attacker or a broken client would (wrong key,
//! `alg: none`, expired, tampered), send them, and check the RFC 6750 answers. Event streams
//! are also read as raw bytes ([`Wire`]) so that a test can prove a name never crossed the
//! socket, not only that no frame with it was parsed.

mod audit;
mod cli;
mod events;
mod insert;
mod setup;
mod sources;
mod wire;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{Reply, Server};

pub use wire::Wire;

/// The HS256 secret test servers verify with: at least 32 bytes, as the server demands.
pub const SECRET: &str = "an end-to-end test secret, 32+ bytes long";

/// Another valid secret, which the servers do not know.
pub const OTHER_SECRET: &str = "some other secret of at least 32 bytes";

/// The challenge of every `401` and `403`, before any `error=` attribute.
const REALM: &str = "Bearer realm=\"broker\"";

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs()
}

/// Claims valid for an hour that allow `insert`, `events` and `audit` (lists of patterns).
pub fn claims(insert: &[&str], events: &[&str], audit: &[&str]) -> Value {
    json!({
        "sub": "e2e",
        "exp": now_secs() + 3600,
        "iat": now_secs(),
        "broker": {"insert": insert, "events": events, "audit": audit},
    })
}

/// Claims that allow everything, for the client that sets up the data.
pub fn admin_claims() -> Value {
    claims(&["*"], &["*"], &["*"])
}

/// `claims` with `key` set to `value`, or removed when `value` is null.
pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    let object = claims.as_object_mut().expect("claims are an object");
    if value.is_null() {
        object.remove(key);
    } else {
        object.insert(key.to_string(), value);
    }
    claims
}

/// `claims` signed with HS256 and [`SECRET`], as the test servers expect.
pub fn sign(claims: &Value) -> String {
    sign_with(claims, Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()))
}

/// `claims` signed with any algorithm and key.
pub fn sign_with(claims: &Value, algorithm: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).expect("sign the claims")
}

/// A token that allows everything.
pub fn admin() -> String {
    sign(&admin_claims())
}

/// An unsigned token: header `{"alg":"none"}` and an empty signature.
pub fn unsigned(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    format!(
        "{}.{}.",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    )
}

/// `token` with its payload replaced by `claims`, keeping the header and the signature.
pub fn tampered(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWT has three parts: {token}");
    format!("{}.{}.{}", parts[0], base64url(claims.to_string().as_bytes()), parts[2])
}

/// Base64url without padding (RFC 7515, section 2), the encoding of each part of a JWT.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |bits, (i, &byte)| bits | u32::from(byte) << (16 - 8 * i));
        // n bytes carry 8n bits: n + 1 characters of 6 bits hold them, the rest is padding.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The value of an `Authorization` header carrying `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Starts a server that verifies HS256 tokens with [`SECRET`] (from the environment, as the
/// help recommends), with extra arguments.
pub async fn start(args: &[&str]) -> Server {
    Server::start_with(args, &[("BROKER_JWT_SECRET", SECRET)]).await
}

/// A response, read whole, with the request it answers for failure messages.
#[derive(Debug)]
pub struct Answer {
    /// What was asked.
    pub request: String,
    /// The response.
    pub reply: Reply,
}

impl std::ops::Deref for Answer {
    type Target = Reply;

    fn deref(&self) -> &Reply {
        &self.reply
    }
}

impl Answer {
    /// Checks the status, that the body is the JSON error `code`, and returns the
    /// `WWW-Authenticate` challenge.
    fn error(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status, status, "{}: {self:?}", self.request);
        assert_eq!(self.json()["error"], code, "{}: {self:?}", self.request);
        let message = self.json()["message"].as_str().map(str::to_owned).unwrap_or_default();
        assert!(!message.is_empty(), "{}: an error has a message: {self:?}", self.request);
        self.header("www-authenticate")
            .unwrap_or_else(|| panic!("{}: no WWW-Authenticate: {self:?}", self.request))
    }

    /// Checks `401 missing_token` with the bare challenge `Bearer realm="broker"`.
    pub fn expect_missing_token(&self) {
        let challenge = self.error(401, "missing_token");
        assert_eq!(challenge, REALM, "{}: {self:?}", self.request);
    }

    /// Checks `401 invalid_token` with a challenge that says `error="invalid_token"`.
    pub fn expect_invalid_token(&self) {
        let challenge = self.error(401, "invalid_token");
        assert!(challenge.starts_with(REALM), "{}: {challenge}", self.request);
        assert!(challenge.contains("error=\"invalid_token\""), "{}: {challenge}", self.request);
    }

    /// Checks `403 insufficient_scope` with a challenge that says so.
    pub fn expect_insufficient_scope(&self) {
        let challenge = self.error(403, "insufficient_scope");
        assert!(challenge.starts_with(REALM), "{}: {challenge}", self.request);
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{}: {challenge}",
            self.request
        );
    }

    /// Checks the status is `status`.
    pub fn expect_status(&self, status: u16) {
        assert_eq!(self.status, status, "{}: {self:?}", self.request);
    }
}

/// Sends `method path` with `headers` and an optional JSON body.
pub async fn send(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Answer {
    let mut headers = headers.to_vec();
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|body| body.to_string().into_bytes());
    let reply = server.request(method, path, &headers, body).await;
    let request = format!("{method} {path} with {headers:?}");
    Answer { request, reply }
}

/// `GET path` with `token` as a bearer token, or with no token for `None`.
pub async fn get(server: &Server, path: &str, token: Option<&str>) -> Answer {
    let authorization = token.map(bearer);
    let headers: Vec<_> =
        authorization.iter().map(|value| ("authorization", value.as_str())).collect();
    send(server, "GET", path, &headers, None).await
}

/// `POST /insert` of `data` as a version of `event`, with `token` as a bearer token.
pub async fn insert(server: &Server, token: Option<&str>, event: &str, data: Value) -> Answer {
    let authorization = token.map(bearer);
    let headers: Vec<_> =
        authorization.iter().map(|value| ("authorization", value.as_str())).collect();
    send(server, "POST", "/insert", &headers, Some(&json!({"event": event, "data": data}))).await
}

/// Inserts with an admin token; checks the 201 and returns the version's id.
pub async fn admin_insert(server: &Server, event: &str, data: Value) -> u64 {
    let answer = insert(server, Some(&admin()), event, data).await;
    answer.expect_status(201);
    answer.json()["id"].as_u64().unwrap_or_else(|| panic!("no id in {answer:?}"))
}

/// Every stored version of `event`, read with an admin token.
pub async fn admin_audit(server: &Server, event: &str) -> Vec<Value> {
    let path = crate::support::audit_path(event);
    let answer = get(server, &format!("{path}?limit=1000"), Some(&admin())).await;
    answer.expect_status(200);
    answer.json().as_array().expect("an audit page is a list").clone()
}

#[test]
fn base64url_encodes_without_padding() {
    let cases: [(&[u8], &str); 7] = [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
        (b"\xfb\xff", "-_8"),
        (br#"{"alg":"none"}"#, "eyJhbGciOiJub25lIn0"),
    ];
    for (input, expected) in cases {
        assert_eq!(base64url(input), expected, "{input:?}");
    }
}
