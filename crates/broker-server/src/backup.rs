//! `broker-server backup`: download a running broker's copy of its database (`GET /backup`)
//! into a new file, never leaving a partial file under the final name.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

use crate::Error;

/// The server's default address, as a URL.
const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// How long the copy may stall, once it started to arrive, before the download gives up. The
/// server writes the whole copy before it answers, so once bytes flow, they flow at the speed of
/// the network; a long silence means the connection is gone.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The most of an error answer's body that is read, for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// `broker-server backup`: where the broker is, and where its copy goes.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The file to write the copy to; it must not exist.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,

    /// The broker to copy, as the URL it serves on (plain HTTP).
    #[arg(long, env = "BROKER_URL", default_value = DEFAULT_URL)]
    pub url: String,

    /// A token whose audit scope is `*`, when the broker has authorization on. Prefer the
    /// environment variable to the flag, which other users of the machine can see.
    #[arg(long, env = "BROKER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// A backup that was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Saved {
    /// The file written.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

impl fmt::Display for Saved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wrote {} bytes to {}", self.bytes, self.path.display())
    }
}

impl BackupArgs {
    /// Downloads the copy to `FILE.partial`, syncs it, and gives it the name `FILE`.
    ///
    /// # Errors
    ///
    /// [`Error::Backup`] when `FILE` exists (before anything is downloaded, and again at the
    /// end), the broker cannot be reached or refuses (its message is passed on), the copy
    /// arrives short of its length, or a file cannot be written. `FILE.partial` is then removed.
    pub async fn run(&self) -> Result<Saved, Error> {
        let failed = |reason: String| Error::Backup { to: self.to.clone(), reason };
        if self.to.try_exists().unwrap_or(false) {
            return Err(failed(EXISTS.into()));
        }
        let uri = backup_uri(&self.url).map_err(failed)?;
        let mut request = Request::get(uri).body(Empty::<Bytes>::new()).map_err(|error| {
            failed(format!("--url {:?} does not make a request: {error}", self.url))
        })?;
        if let Some(token) = &self.token {
            let bearer = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| failed("the token has characters a header cannot hold".into()))?;
            request.headers_mut().insert(header::AUTHORIZATION, bearer);
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = client
            .request(request)
            .await
            .map_err(|error| failed(format!("cannot reach {}: {}", self.url, chain(&error))))?;
        let (parts, mut body) = response.into_parts();
        if parts.status != StatusCode::OK {
            return Err(failed(refusal(parts.status, body).await));
        }
        let expected = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
            .ok_or_else(|| failed("the answer has no Content-Length".into()))?;

        let (partial, mut file) = Partial::create(&self.to).await.map_err(failed)?;
        let mut received = 0;
        loop {
            let frame = tokio::time::timeout(STALL_TIMEOUT, body.frame()).await.map_err(|_| {
                failed(format!("the copy stalled after {received} of {expected} bytes"))
            })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|error| {
                failed(format!(
                    "the copy broke off after {received} of {expected} bytes: {}",
                    chain(&error)
                ))
            })?;
            if let Ok(data) = frame.into_data() {
                file.write_all(&data).await.map_err(|error| failed(partial.io(error)))?;
                received += data.len() as u64;
            }
        }
        if received != expected {
            return Err(failed(format!("the copy ended after {received} of {expected} bytes")));
        }
        // Durable before it is named: a crash never leaves FILE holding part of a copy.
        file.sync_all().await.map_err(|error| failed(partial.io(error)))?;
        drop(file);
        partial.finish().map_err(failed)?;
        Ok(Saved { path: self.to.clone(), bytes: received })
    }
}

/// Why a backup refuses to write its file.
const EXISTS: &str = "the file exists, and a backup never overwrites one";

/// `url` with the path `/backup`.
fn backup_uri(url: &str) -> Result<Uri, String> {
    let uri = format!("{}/backup", url.trim_end_matches('/'));
    let uri: Uri = uri.parse().map_err(|error| format!("--url {url:?} is not a URL: {error}"))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some() => Ok(uri),
        _ => Err(format!("--url {url:?} must be an http:// URL with a host")),
    }
}

/// What an answer other than `200` says: its status, and its JSON error message if it has one.
async fn refusal<B>(status: StatusCode, body: B) -> String
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = http_body_util::Limited::new(body, MAX_ERROR_BODY).collect();
    let message = match tokio::time::timeout(STALL_TIMEOUT, limited).await {
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|json| json.get("message")?.as_str().map(str::to_owned))
        }
        Ok(Err(_)) | Err(_) => None,
    };
    match message {
        Some(message) => format!("the broker answered {status}: {message}"),
        None => format!("the broker answered {status}"),
    }
}

/// `error` and each of its causes, once each, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `FILE.partial` while the copy arrives: removed when dropped, unless it became `FILE`.
struct Partial {
    path: PathBuf,
    to: PathBuf,
    done: bool,
}

impl Partial {
    /// Creates `to.partial`, open for writing. One that exists is another backup's, running or
    /// abandoned: it is neither overwritten nor removed.
    async fn create(to: &Path) -> Result<(Partial, File), String> {
        let mut name = to.as_os_str().to_owned();
        name.push(".partial");
        let path = PathBuf::from(name);
        match OpenOptions::new().write(true).create_new(true).open(&path).await {
            Ok(file) => Ok((Partial { path, to: to.to_path_buf(), done: false }, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Err(format!(
                "{} exists: another backup to this file may be running; remove it if none is",
                path.display()
            )),
            Err(error) => Err(format!("cannot create {}: {error}", path.display())),
        }
    }

    /// A failure to write the file, naming it.
    fn io(&self, error: io::Error) -> String {
        format!("cannot write {}: {error}", self.path.display())
    }

    /// Gives the file its final name, unless a file took that name meanwhile, and makes the
    /// name durable.
    ///
    /// A hard link fails when its name exists, so no file that appeared since the first check
    /// is ever replaced; only on a file system without hard links is the name checked, then
    /// taken by a rename.
    fn finish(mut self) -> Result<(), String> {
        match std::fs::hard_link(&self.path, &self.to) {
            Ok(()) => {
                if let Err(error) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), %error, "cannot remove");
                }
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Err(EXISTS.into()),
            Err(_) if self.to.try_exists().unwrap_or(true) => return Err(EXISTS.into()),
            Err(_) => std::fs::rename(&self.path, &self.to)
                .map_err(|error| format!("cannot rename {} to it: {error}", self.path.display()))?,
        }
        self.done = true;
        let dir = match self.to.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| format!("cannot sync the directory {}: {error}", dir.display()))
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done
            && let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove a partial backup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backup_uri;

    #[test]
    fn the_url_must_be_plain_http_with_a_host() {
        let uri = backup_uri("http://127.0.0.1:8080/").expect("a URL");
        assert_eq!(uri.to_string(), "http://127.0.0.1:8080/backup");
        let uri = backup_uri("http://broker.internal/prefix").expect("a URL");
        assert_eq!(uri.to_string(), "http://broker.internal/prefix/backup");
        for bad in ["https://broker.example", "127.0.0.1:8080", "", "http://"] {
            assert!(backup_uri(bad).is_err(), "{bad:?} is refused");
        }
    }
}
