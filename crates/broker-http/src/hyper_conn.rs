//! Connections served by hyper: every request but the event streams that `direct.rs` writes and
//! the publishers' inserts that `keep_alive.rs` serves.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::head::{MAX_HEADERS, MAX_REQUEST_HEAD};
use crate::metrics::CloseCause;
use crate::{App, Body, handle};

/// The HTTP/1.1 settings every connection is served with.
pub(crate) fn builder(app: &App) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(app.config().header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_REQUEST_HEAD);
    http
}

/// Serves the requests of one connection with [`handle`].
pub(crate) fn serve<I>(
    http: &http1::Builder,
    app: &App,
    io: I,
) -> http1::Connection<TokioIo<I>, Handler>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    http.serve_connection(TokioIo::new(io), Handler(app.clone()))
}

/// Why hyper ended a connection with `error`.
pub(crate) fn close_cause(error: &hyper::Error) -> CloseCause {
    if error.is_timeout() {
        return CloseCause::HeaderTimeout;
    }
    let io =
        std::error::Error::source(error).and_then(|source| source.downcast_ref::<std::io::Error>());
    match io.map(std::io::Error::kind) {
        Some(std::io::ErrorKind::TimedOut) => CloseCause::WriteTimeout,
        _ => CloseCause::Error,
    }
}

/// The hyper service of a connection: every request goes to [`handle`].
pub(crate) struct Handler(App);

impl Service<Request<Incoming>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let app = self.0.clone();
        Box::pin(async move { Ok(handle(&app, request).await) })
    }
}
