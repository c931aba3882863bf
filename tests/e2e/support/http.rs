//! Plain HTTP requests to a [`Server`]: inserts, audit pages, health, and any other request, as
//! an ordinary HTTP client (reqwest) sends them.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::Server;

/// Characters escaped in a path segment: everything but the unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes `event` as one path segment.
pub fn encode(event: &str) -> String {
    utf8_percent_encode(event, SEGMENT).to_string()
}

/// The path of the first audit page of `event`.
pub fn audit_path(event: &str) -> String {
    format!("/audit/{}", encode(event))
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl Reply {
    /// The first value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().expect("a header value is text"))
    }

    /// Every value of header `name`, split at commas.
    pub fn header_list(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .flat_map(|value| value.to_str().expect("a header value is text").split(','))
            .map(|item| item.trim().to_ascii_lowercase())
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("the body is not JSON ({error}): {:?}", self.body))
    }

    /// Checks that this is the JSON error `code` with `status`, and returns its message.
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "status of {self}");
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "content type of {self}");
        let json = self.json();
        assert_eq!(json["error"], code, "error code of {self}");
        let message = json["message"].as_str().unwrap_or_else(|| panic!("no message in {self}"));
        assert!(!message.is_empty(), "empty message in {self}");
        message.to_string()
    }

    /// The `rel="next"` target of the `Link` header, if present.
    pub fn next_link(&self) -> Option<String> {
        let link = self.header("link")?;
        let (target, params) = link.split_once(';').unwrap_or_else(|| panic!("bad Link {link:?}"));
        let target = target.trim();
        assert!(params.trim() == "rel=\"next\"", "the Link header {link:?} is not rel=\"next\"");
        let target = target.strip_prefix('<').and_then(|target| target.strip_suffix('>'));
        Some(target.unwrap_or_else(|| panic!("bad Link target in {link:?}")).to_string())
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.body)
    }
}

/// A stored version as `/insert` and `/audit` return it; unknown fields are refused.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// The id.
    pub id: u64,
    /// The event name.
    pub event: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The data, as the server wrote it.
    pub data: Box<RawValue>,
}

impl Version {
    /// The data, parsed.
    pub fn data(&self) -> Value {
        serde_json::from_str(self.data.get()).expect("data is JSON")
    }

    /// What identifies the version on the wire: event, id and the data's text.
    pub fn key(&self) -> (String, u64, String) {
        (self.event.clone(), self.id, self.data.get().to_string())
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        (self.id, &self.event, self.timestamp, self.data.get())
            == (other.id, &other.event, other.timestamp, other.data.get())
    }
}

/// What `/healthz` says.
#[derive(Debug, Deserialize)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// The database's identity, as 32 lower-case hex digits.
    pub database_id: String,
    /// The last committed id, 0 for none.
    pub last_id: u64,
    /// Live SSE subscribers.
    pub subscribers: u64,
}

impl Server {
    /// Sends any request and reads the whole response.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap_or_else(|error| panic!("{path}: {error}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("read the body");
        Reply { status, headers, body }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None).await
    }

    /// `POST /insert` with `body` as `application/json`.
    pub async fn post_insert(&self, body: &str) -> Reply {
        let headers = [("content-type", "application/json")];
        self.request("POST", "/insert", &headers, Some(body.as_bytes().to_vec())).await
    }

    /// Inserts `data` (JSON text) as a version of `event`; checks the 201 and returns the version.
    pub async fn insert_raw(&self, event: &str, data: &str) -> Version {
        let body = format!(r#"{{"event":{},"data":{data}}}"#, Value::from(event));
        let reply = self.post_insert(&body).await;
        assert_eq!(reply.status, 201, "insert {body}: {reply}");
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "content type of {reply}");
        serde_json::from_str(&reply.body)
            .unwrap_or_else(|error| panic!("the insert reply is not a version ({error}): {reply}"))
    }

    /// Inserts `data` as a version of `event`; checks the 201 and returns the version.
    pub async fn insert(&self, event: &str, data: Value) -> Version {
        self.insert_raw(event, &data.to_string()).await
    }

    /// One audit page: `path` is what follows the host, as in a `Link` header.
    pub async fn audit_page(&self, path: &str) -> (Vec<Version>, Option<String>) {
        let reply = self.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {reply}");
        let versions = serde_json::from_str(&reply.body).unwrap_or_else(|error| {
            panic!("GET {path} is not a list of versions ({error}): {reply}")
        });
        (versions, reply.next_link())
    }

    /// Every stored version of `event`, following `Link` headers from page to page.
    pub async fn audit(&self, event: &str) -> Vec<Version> {
        let mut all = Vec::new();
        let mut next = Some(audit_path(event));
        while let Some(path) = next {
            let (page, link) = self.audit_page(&path).await;
            all.extend(page);
            next = link;
        }
        all
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Health {
        let reply = self.get("/healthz").await;
        assert_eq!(reply.status, 200, "GET /healthz: {reply}");
        serde_json::from_str(&reply.body)
            .unwrap_or_else(|error| panic!("GET /healthz is not health ({error}): {reply}"))
    }
}
