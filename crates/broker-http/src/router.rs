//! Routing: a plain async function from a request to a response, callable without a socket.

use std::time::Instant;

use broker_auth::Access;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Full};

use crate::App;
use crate::body::{Body, json_response};
use crate::error::ApiError;
use crate::head::Head;
use crate::metrics::INSERT_ROUTE;
use crate::{audit, auth, backup, cors, events, insert, snapshot};

const GET: &[Method] = &[Method::GET, Method::OPTIONS];
const POST: &[Method] = &[Method::POST, Method::OPTIONS];

#[derive(Clone, Copy)]
enum Route<'a> {
    Insert,
    Events,
    Snapshot,
    Audit(&'a str),
    Health,
    Ready,
    Metrics,
    Backup,
    Demo,
}

impl Route<'_> {
    fn allow(self) -> &'static [Method] {
        match self {
            Route::Insert => POST,
            Route::Events
            | Route::Snapshot
            | Route::Audit(_)
            | Route::Health
            | Route::Ready
            | Route::Metrics
            | Route::Backup
            | Route::Demo => GET,
        }
    }

    /// The route's name in metrics.
    fn name(self) -> &'static str {
        match self {
            Route::Insert => INSERT_ROUTE,
            Route::Events => "events",
            Route::Snapshot => "snapshot",
            Route::Audit(_) => "audit",
            Route::Health => "healthz",
            Route::Ready => "readyz",
            Route::Metrics => "metrics",
            Route::Backup => "backup",
            Route::Demo => "demo",
        }
    }
}

fn route(path: &str, demo: bool) -> Option<Route<'_>> {
    match path {
        "/" if demo => Some(Route::Demo),
        "/insert" => Some(Route::Insert),
        "/events" => Some(Route::Events),
        "/snapshot" => Some(Route::Snapshot),
        "/healthz" => Some(Route::Health),
        "/readyz" => Some(Route::Ready),
        "/metrics" => Some(Route::Metrics),
        "/backup" => Some(Route::Backup),
        // The event is one path segment: a `/` in its name is sent as `%2F`.
        _ => path.strip_prefix("/audit/").filter(|event| !event.contains('/')).map(Route::Audit),
    }
}

/// Answers one request. Every response, errors included, carries the CORS headers.
///
/// This is the transport's one way to answer: every connection path calls it, and the only
/// response made elsewhere, the refusal of a connection over the limit, goes through the same
/// last step.
pub async fn handle<B>(app: &App, request: Request<B>) -> Response<Body>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let origin = request.headers().get(header::ORIGIN).cloned();
    let started = Instant::now();
    // A clone of the URI shares its bytes: the route borrows the path without copying it.
    let uri = request.uri().clone();
    let route = route(uri.path(), app.config().demo);
    let response = match dispatch(app, route, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let response = respond(app, origin.as_ref(), response);
    let name = route.map_or("none", Route::name);
    app.metrics().request(name, response.status());
    if matches!(route, Some(Route::Insert)) {
        app.metrics().insert_answered(started.elapsed());
    }
    response
}

/// The answer to a connection over the limit: `503` with `Retry-After`, and the CORS headers of
/// its request's origin when its head arrived.
pub(crate) fn refuse_busy(app: &App, head: Option<&Head>) -> Response<Body> {
    let origin = head.and_then(|head| head.headers().get(header::ORIGIN));
    respond(app, origin, ApiError::TooManyConnections.into_response())
}

/// The last step of every response the transport gives: the CORS headers, and over TLS the HSTS
/// policy, if there is one.
pub(crate) fn respond(
    app: &App,
    origin: Option<&HeaderValue>,
    mut response: Response<Body>,
) -> Response<Body> {
    let headers = response.headers_mut();
    for (name, value) in answer_lines(app, origin) {
        headers.insert(name, value);
    }
    response
}

/// The header lines [`respond`] adds to the answer to a request from `origin`.
pub(crate) fn answer_lines(
    app: &App,
    origin: Option<&HeaderValue>,
) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
    let credentials = app.config().auth.as_ref().is_some_and(|auth| auth.cookie_name().is_some());
    let cors = app.config().allow_origin.lines(origin, credentials);
    let hsts = app.hsts().map(|hsts| (header::STRICT_TRANSPORT_SECURITY, hsts.clone()));
    cors.chain(hsts)
}

async fn dispatch<B>(
    app: &App,
    route: Option<Route<'_>>,
    request: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    // RFC 9112, 3.2: a server must answer 400 to an HTTP/1.1 request without a Host header.
    if request.version() == Version::HTTP_11 && !request.headers().contains_key(header::HOST) {
        return Err(ApiError::MissingHost);
    }
    let Some(route) = route else {
        return Err(ApiError::NotFound(request.uri().path().to_owned()));
    };
    let allow = route.allow();
    let method = request.method();
    if method == Method::OPTIONS {
        return Ok(cors::preflight(request.headers(), allow));
    }
    if !allow.contains(method) {
        return Err(ApiError::MethodNotAllowed { method: method.clone(), allow });
    }
    match route {
        // Health checks answer load balancers and orchestrators, which hold no tokens.
        Route::Health => Ok(health(app)),
        Route::Ready => Ok(ready(app)),
        // Only event streams serve anonymous clients: the public events.
        Route::Events => events::events(app, &authorize(app, &request, true)?, &request).await,
        Route::Insert => {
            let access = authorize(app, &request, false)?;
            insert::insert(app, &access, request).await
        }
        Route::Snapshot => {
            let access = authorize(app, &request, true)?;
            snapshot::snapshot(app, &access, request.uri().query()).await
        }
        Route::Audit(event) => {
            let access = authorize(app, &request, false)?;
            audit::audit(app, &access, event, request.uri().query()).await
        }
        Route::Metrics => authorize(app, &request, false).and_then(|_| metrics(app)),
        Route::Backup => backup::backup(app, &authorize(app, &request, false)?).await,
        Route::Demo => authorize(app, &request, false).map(|_| demo()),
    }
}

/// The live demo page, compiled into the binary.
fn demo() -> Response<Body> {
    const PAGE: &str = include_str!("demo.html");
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// Who is asking; without a token only where `anonymous` clients are served.
fn authorize<B>(app: &App, request: &Request<B>, anonymous: bool) -> Result<Access, ApiError> {
    let access = auth::access(app.config().auth.as_ref(), request.headers(), request.uri())?;
    if !anonymous {
        access.require_token()?;
    }
    Ok(access)
}

/// Whether the server takes new work: `503` while shutting down or while the storage fails, so
/// that load balancers move on.
fn ready(app: &App) -> Response<Body> {
    if !app.is_ready() {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"shutting_down"}"#);
    }
    match app.broker().storage_failure() {
        None => json_response(StatusCode::OK, r#"{"status":"ready"}"#),
        Some(reason) => {
            let body = serde_json::json!({ "status": "storage_failing", "reason": reason });
            json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string())
        }
    }
}

/// The Prometheus text exposition of every metric.
fn metrics(app: &App) -> Result<Response<Body>, ApiError> {
    let Some(mut text) = app.render_metrics() else {
        return Err(ApiError::NotFound("/metrics (metrics are not enabled)".into()));
    };
    app.metrics().render_own(&mut text);
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed_unsync());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

fn health(app: &App) -> Response<Body> {
    let broker = app.broker();
    let body = serde_json::json!({
        "status": "ok",
        "database_id": broker.database_id().simple().to_string(),
        "last_id": broker.last_id(),
        "subscribers": broker.subscriber_count(),
    });
    json_response(StatusCode::OK, body.to_string())
}
