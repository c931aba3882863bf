//! `GET /backup`: a consistent copy of the whole database, written by the function the program
//! gave [`App::with_backup`](crate::App::with_backup) to a scratch file, then sent to the client
//! and removed.
//!
//! The transport knows nothing of the database: it names the scratch file, calls the function,
//! and streams whatever the function wrote. The copy is written whole before the answer starts,
//! so its length is known and sent as `Content-Length`: a client that receives fewer bytes knows
//! the copy is incomplete.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use broker_auth::Access;
use bytes::BytesMut;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::AsyncReadExt;

use crate::App;
use crate::body::Body;
use crate::error::ApiError;

/// The function that writes a copy of the database to the new file it is given.
type WriteCopy = Box<dyn Fn(PathBuf) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// How `GET /backup` gets a copy of the database: the directory its scratch files go in, and
/// the function that writes a copy to one of them.
///
/// Made with [`Backup::new`] and handed to [`App::with_backup`](crate::App::with_backup).
pub struct Backup {
    dir: PathBuf,
    write: WriteCopy,
}

impl Backup {
    /// Copies written by `write` into new files in `dir`.
    ///
    /// For each request, `write` is called with the path of a file that does not exist yet, in
    /// `dir`, and must create it there and return when the copy is complete, or fail with a
    /// message that says why. The transport sends the file, then removes it, whether the copy
    /// succeeded, failed, or the client went away meanwhile; a `write` that fails should remove
    /// what it started.
    ///
    /// Choose `dir` on the database's own file system (its directory, say): the copy needs as
    /// much room as the database, and the database's disk is the one whose free space is known
    /// to be watched.
    pub fn new<F, Fut>(dir: impl Into<PathBuf>, write: F) -> Backup
    where
        F: Fn(PathBuf) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Backup { dir: dir.into(), write: Box::new(move |path| write(path).boxed()) }
    }

    /// A path in the scratch directory that no other copy uses.
    ///
    /// Hidden, and named after the process, a counter and the clock: two copies of this process
    /// never share a name, nor does a copy share one with the leftover of a process that died
    /// while writing one.
    fn scratch_path(&self) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!(
            ".broker-backup-{}-{}-{nanos}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.dir.join(name)
    }
}

impl fmt::Debug for Backup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backup").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// How much of the copy is read per frame of the body.
const CHUNK: usize = 64 * 1024;

/// Answers `GET /backup` for a client with `access`: `404` unless the app serves backups,
/// `403` unless `access` may read every event.
pub(crate) async fn backup(app: &App, access: &Access) -> Result<Response<Body>, ApiError> {
    let Some(backup) = app.backup() else {
        return Err(ApiError::NotFound("/backup (backups are not enabled)".into()));
    };
    access.may_audit_every_event()?;
    let path = backup.scratch_path();
    let scratch = Scratch(path.clone());
    let write = (backup.write)(path.clone());
    // Spawned, with the file's guard, so that a client that goes away does not leave the copy
    // half-written and then forgotten: the task runs to the end, and its guard is dropped with
    // the output nobody waits for, removing the file. The same happens if `write` panics.
    let written = tokio::spawn(async move { (write.await, scratch) }).await;
    let (result, scratch) = written.map_err(|error| {
        tracing::error!(%error, "writing a backup failed");
        ApiError::BackupFailed("the backup function failed".into())
    })?;
    if let Err(reason) = result {
        tracing::error!(%reason, "writing a backup failed");
        return Err(ApiError::BackupFailed(reason));
    }
    let unreadable = |error: std::io::Error| {
        tracing::error!(path = %path.display(), %error, "reading a backup failed");
        ApiError::BackupFailed(format!("the copy cannot be read: {error}"))
    };
    let file = tokio::fs::File::open(&path).await.map_err(unreadable)?;
    let len = file.metadata().await.map_err(unreadable)?.len();
    tracing::info!(bytes = len, "sending a backup");

    let frames = async_stream::stream! {
        // Held by the body: the file goes when the body does, sent whole or dropped with a
        // client that went away.
        let _scratch = scratch;
        let mut file = file;
        loop {
            let mut chunk = BytesMut::with_capacity(CHUNK);
            match file.read_buf(&mut chunk).await {
                Ok(0) => break,
                Ok(_) => yield Ok::<_, Infallible>(Frame::data(chunk.freeze())),
                Err(error) => {
                    // The body ends short of its Content-Length, so the client cannot take
                    // the truncated copy for a whole one.
                    tracing::error!(%error, "reading a backup failed; its answer is cut short");
                    break;
                }
            }
        }
    };
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // Every event's data is in it: no cache may keep a copy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A scratch file, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        remove(&self.0);
    }
}

/// Removes `path`; one that was never created is no failure.
fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot remove a backup's scratch file");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use broker_core::{Broker, Config};
    use broker_storage::MemoryStorage;
    use bytes::Bytes;
    use http::{Request, StatusCode};
    use http_body_util::{BodyExt, Empty};
    use tokio::sync::Notify;

    use super::Backup;
    use crate::{App, HttpConfig, handle};

    const COPY: &[u8] = b"a copy of the database";

    async fn app() -> App {
        let broker = Broker::open(MemoryStorage::new(), Config::default()).await.expect("open");
        App::new(broker, HttpConfig::default())
    }

    async fn get_backup(app: &App) -> http::Response<crate::Body> {
        let request = Request::get("/backup")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .expect("a request");
        handle(app, request).await
    }

    /// The files in `dir`: none is left behind once a backup is answered.
    fn files(dir: &Path) -> Vec<PathBuf> {
        let entries = std::fs::read_dir(dir).expect("read the scratch directory");
        entries.map(|entry| entry.expect("an entry").path()).collect()
    }

    /// Writes [`COPY`], or fails after writing half of it.
    fn writer(dir: &Path, fail: bool) -> Backup {
        Backup::new(dir, move |path: PathBuf| async move {
            let written = if fail { &COPY[..4] } else { COPY };
            std::fs::write(&path, written).map_err(|error| error.to_string())?;
            if fail { Err("the disk is full".to_owned()) } else { Ok(()) }
        })
    }

    #[tokio::test]
    async fn without_a_backup_function_the_route_is_not_found() {
        let response = get_backup(&app().await).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_copy_is_sent_with_its_length_and_then_removed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let app = app().await.with_backup(writer(dir.path(), false));
        let response = get_backup(&app).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/octet-stream");
        assert_eq!(headers["content-length"], COPY.len().to_string().as_str());
        assert_eq!(files(dir.path()).len(), 1, "the copy waits for its body to be sent");
        let body = response.into_body().collect().await.expect("the body").to_bytes();
        assert_eq!(&body[..], COPY);
        assert_eq!(files(dir.path()), Vec::<PathBuf>::new(), "the copy is removed once sent");
    }

    #[tokio::test]
    async fn a_failed_copy_is_a_500_that_says_why_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let app = app().await.with_backup(writer(dir.path(), true));
        let response = get_backup(&app).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.expect("the body").to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"], "backup_failed");
        assert!(body["message"].as_str().is_some_and(|m| m.contains("the disk is full")), "{body}");
        assert_eq!(files(dir.path()), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn a_copy_whose_client_went_away_is_removed_when_it_is_done() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let go = Arc::new(Notify::new());
        let written = Arc::new(AtomicBool::new(false));
        let (wait, done) = (Arc::clone(&go), Arc::clone(&written));
        let backup = Backup::new(dir.path(), move |path: PathBuf| {
            let (wait, done) = (Arc::clone(&wait), Arc::clone(&done));
            async move {
                wait.notified().await;
                std::fs::write(&path, COPY).map_err(|error| error.to_string())?;
                done.store(true, Ordering::SeqCst);
                Ok(())
            }
        });
        let app = app().await.with_backup(backup);
        let gave_up = tokio::time::timeout(Duration::from_millis(50), get_backup(&app)).await;
        assert!(gave_up.is_err(), "the copy is still being written");
        // The copy is written after the request is gone; it must not stay behind.
        go.notify_one();
        for _ in 0..200 {
            if written.load(Ordering::SeqCst) && files(dir.path()).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the copy is still there: {:?}", files(dir.path()));
    }
}
