//! An insert whose whole request, head and body, is in the keep-alive loop's buffer: answered
//! from those bytes, without the `http` types.
//!
//! Almost every insert of a publisher arrives whole in one read. For those, building a
//! `Request` (a header map and a URI), and then a `Response` with a map of its own and a boxed
//! body, is most of what the transport spends on the request. So the loop reads what the route
//! needs straight from httparse's reading of the head, and the answer is written as bytes.
//!
//! Nothing of the route is written twice: the head is checked by the same functions as in
//! `insert.rs` (through [`Headers`]), the token by `auth.rs`, the body is stored by
//! [`insert::store`], and the answer carries the header lines of [`router::answer_lines`]. An
//! error is answered as in every other path, by [`router::respond`].
//!
//! A request with anything only [`handle`](crate::handle) reads goes to it instead: a query (it
//! may hold a token), a token that can only be in a cookie, no `Host`, a value the `http` types
//! refuse.

use std::ops::Range;
use std::time::Instant;

use broker_auth::Access;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Body;
use crate::error::ApiError;
use crate::head::{self, Headers};
use crate::metrics::INSERT_ROUTE;
use crate::{App, auth, insert, router};

/// What the head of an insert served here says, read before its body is.
pub(crate) struct Prepared {
    /// Who asks, and the idempotency key; or why the insert is refused before its body is read.
    checked: Result<(Access, Option<String>), ApiError>,
    /// Where the value of the `Origin` header lies in the head.
    origin: Option<Range<usize>>,
    /// When the head was read: the start of the insert's latency, as `handle` counts it.
    read_at: Instant,
}

/// Reads the plain insert head `bytes`, as httparse read it (`parsed`), for this path; `None`
/// when it is [`handle`](crate::handle)'s to serve.
pub(crate) fn prepare(
    app: &App,
    parsed: &httparse::Request<'_, '_>,
    bytes: &[u8],
) -> Option<Prepared> {
    // `/insert` itself: a query may carry a token, which only `handle` reads.
    if parsed.path != Some("/insert") {
        return None;
    }
    let headers: &[httparse::Header<'_>] = parsed.headers;
    // `handle` refuses a request without `Host`: it is its to answer. A header value that the
    // `http` types refuse (a control byte but the tab, or DEL) never gets here: httparse refuses
    // the same bytes, and the head goes to hyper, which answers 400.
    headers.line(&header::HOST)?;
    let read_at = Instant::now();
    let verifier = app.config().auth.as_ref();
    let access = auth::access_by_header(verifier, headers.line(&header::AUTHORIZATION))?;
    let checked = access.and_then(|access| {
        access.require_token()?;
        Ok((access, insert::check_head(headers)?))
    });
    let origin = headers.line(&header::ORIGIN).map(|value| head::place(bytes, value));
    Some(Prepared { checked, origin, read_at })
}

/// The answer to a request of the keep-alive loop.
pub(crate) enum Answer {
    /// An insert served here and stored.
    Stored(Stored),
    /// Any other answer, as [`handle`](crate::handle) gives them.
    Other(Response<Body>),
}

/// An insert served here and stored: the request's origin. Its answer's body is in the buffer
/// that [`answer`] was given.
pub(crate) struct Stored {
    origin: Option<HeaderValue>,
}

impl Stored {
    /// Writes the answer, whose body is `json`, into `out`: `201` with the header lines of every
    /// answer, and `Connection: close` unless `keep_alive`.
    pub(crate) fn encode(
        &self,
        app: &App,
        created: &Created,
        keep_alive: bool,
        json: &[u8],
        out: &mut Vec<u8>,
    ) {
        out.clear();
        let dated = match &self.origin {
            None => {
                out.extend_from_slice(&created.start);
                created.dated
            }
            Some(origin) => head::encode_start(StatusCode::CREATED, lines(app, Some(origin)), out),
        };
        head::encode_end(dated, Some(json.len()), !keep_alive, out);
        out.extend_from_slice(json);
    }
}

/// The start of the answer to an insert stored from a request without `Origin`, as
/// [`head::encode_start`] writes it: the same for every such insert of a connection, so it is
/// written once per connection, not once per answer.
pub(crate) struct Created {
    start: Vec<u8>,
    /// Whether `start` has a `Date` line.
    dated: bool,
}

impl Created {
    pub(crate) fn new(app: &App) -> Created {
        let mut start = Vec::with_capacity(128);
        let dated = head::encode_start(StatusCode::CREATED, lines(app, None), &mut start);
        Created { start, dated }
    }
}

/// The header lines of the answer to an insert stored from a request from `origin`.
fn lines(
    app: &App,
    origin: Option<&HeaderValue>,
) -> impl Iterator<Item = (header::HeaderName, HeaderValue)> {
    let content_type = (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    [content_type].into_iter().chain(router::answer_lines(app, origin))
}

/// Answers the insert whose request is `request`: its first `head_len` bytes are the head that
/// `prepared` was read from, and the rest is its body. The body of an answer [`Answer::Stored`]
/// is written into `json`.
pub(crate) async fn answer(
    app: &App,
    prepared: Prepared,
    request: &Bytes,
    head_len: usize,
    json: &mut Vec<u8>,
) -> Answer {
    let Prepared { checked, origin, read_at } = prepared;
    let stored = match checked {
        Ok((access, key)) => insert::store(app, &access, &request[head_len..], key, json).await,
        Err(error) => Err(error),
    };
    let origin = origin.and_then(|range| HeaderValue::from_maybe_shared(request.slice(range)).ok());
    let status = stored.as_ref().map_or_else(ApiError::status, |_| StatusCode::CREATED);
    app.metrics().request(INSERT_ROUTE, status);
    app.metrics().insert_answered(read_at.elapsed());
    match stored {
        Ok(()) => Answer::Stored(Stored { origin }),
        Err(error) => Answer::Other(router::respond(app, origin.as_ref(), error.into_response())),
    }
}
