//! Routing: a plain async function from a request to a response, callable without a socket.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Body as HttpBody;

use crate::App;
use crate::body::{Body, json_response};
use crate::error::ApiError;
use crate::{audit, cors, events, insert};

const GET: &[Method] = &[Method::GET, Method::OPTIONS];
const POST: &[Method] = &[Method::POST, Method::OPTIONS];

enum Route<'a> {
    Insert,
    Events,
    Audit(&'a str),
    Health,
}

impl Route<'_> {
    fn allow(&self) -> &'static [Method] {
        match self {
            Route::Insert => POST,
            Route::Events | Route::Audit(_) | Route::Health => GET,
        }
    }
}

fn route(path: &str) -> Option<Route<'_>> {
    match path {
        "/insert" => Some(Route::Insert),
        "/events" => Some(Route::Events),
        "/healthz" => Some(Route::Health),
        _ => path.strip_prefix("/audit/").map(Route::Audit),
    }
}

/// Answers one request. Every response, errors included, carries the CORS headers.
pub async fn handle<B>(app: &App, request: Request<B>) -> Response<Body>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = match dispatch(app, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    app.config().allow_origin.apply(origin.as_ref(), &mut response);
    response
}

async fn dispatch<B>(app: &App, request: Request<B>) -> Result<Response<Body>, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = request.uri().path().to_owned();
    let Some(route) = route(&path) else { return Err(ApiError::NotFound(path)) };
    let allow = route.allow();
    let method = request.method();
    if method == Method::OPTIONS {
        return Ok(cors::preflight(request.headers(), allow));
    }
    if !allow.contains(method) {
        return Err(ApiError::MethodNotAllowed { method: method.clone(), allow });
    }
    match route {
        Route::Insert => insert::insert(app, request).await,
        Route::Events => events::events(app, &request),
        Route::Audit(event) => audit::audit(app, event, request.uri().query()).await,
        Route::Health => Ok(health(app)),
    }
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
