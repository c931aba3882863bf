//! `GET /events`: the Server-Sent Events stream of one subscriber.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use broker_auth::Access;
use broker_core::{Entry, SubscribeOptions, Subscription};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};

use crate::App;
use crate::auth::{follow, restrict};
use crate::body::{Body, EventStream};
use crate::error::ApiError;
use crate::metrics::{HttpMetrics, StreamEnd};
use crate::sse::{self, Reason, Start};

/// A subscriber with several frames ready gets them in one write, up to this many bytes: fewer
/// system calls, and the frames themselves stay shared until this point.
const COALESCE_LIMIT: usize = 64 * 1024;

/// How long a client that resumes from an id this node has not published yet waits for it: on
/// a shared log, an id read on another node arrives here a moment later. An id no node gave
/// out is then taken for unknown, and the client gets a snapshot.
const RESUME_PATIENCE: Duration = Duration::from_secs(2);

pub(crate) async fn events<B>(
    app: &App,
    access: &Access,
    request: &Request<B>,
) -> Result<Response<Body>, ApiError> {
    let mut options = SubscribeOptions::new();
    let mut resume_from = None;
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
    {
        match &*key {
            "event" => {
                options =
                    follow(access, options, &value, app.broker().config().max_event_name_len)?;
            }
            "lastEventId" => resume_from = Some(value.into_owned()),
            _ => {}
        }
    }
    options = restrict(access, options)?;
    // The header is what browsers send by themselves on reconnect, so it wins over the query.
    let resume_from = last_event_id(request.headers()).or(resume_from);
    let database = app.broker().database_id();
    if let Some(id) = resume_from.as_deref().and_then(|id| sse::parse_id(id, &database)) {
        if id > app.broker().last_id() {
            app.broker().wait_for(id, RESUME_PATIENCE).await;
        }
        options = options.resume_after(id);
    }
    let permit = app.subscriber_permit().ok_or(ApiError::TooManySubscribers)?;
    let subscription = app.broker().subscribe(options);
    let start = match (subscription.resumed(), subscription.pruned_through()) {
        (true, _) => Start::Resumed,
        (false, Some(pruned_through)) => Start::Snapshot(Some(Reason::Pruned(pruned_through))),
        (false, None) if resume_from.is_some() => Start::Snapshot(Some(Reason::UnknownId)),
        (false, None) => Start::Snapshot(None),
    };
    let subscribers = app.broker().subscriber_count();
    tracing::debug!(start = start.as_str(), subscribers, "subscriber joined");

    let body = stream(app.clone(), subscription, permit, start, access.expires_at());
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.extensions_mut().insert(EventStream);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert("broker-start", HeaderValue::from_static(start.as_str()));
    if let Start::Snapshot(Some(reason)) = start {
        headers.insert("broker-start-reason", HeaderValue::from_static(reason.as_str()));
    }
    Ok(response)
}

fn last_event_id(headers: &HeaderMap) -> Option<String> {
    Some(headers.get("last-event-id")?.to_str().ok()?.to_owned())
}

/// The body of one event stream: the prelude, then entries as they come, heartbeats while idle.
///
/// The stream ends when the server shuts down or the broker closes. When the client goes away,
/// hyper drops the body, which drops the subscription.
/// A token that expires ends its stream at that moment, so that the client reconnects with a
/// fresh one.
fn stream(
    app: App,
    mut subscription: Subscription,
    permit: OwnedSemaphorePermit,
    start: Start,
    expires_at: Option<SystemTime>,
) -> Body {
    let heartbeat = app.config().heartbeat;
    let prelude = sse::prelude(app.config().retry, start);
    let frames = async_stream::stream! {
        // The stream counts against `max_subscribers` for as long as it lives.
        let _permit = permit;
        yield Ok::<_, Infallible>(Frame::data(prelude));
        // Until the loop says otherwise, the stream ends because hyper dropped it: the client
        // went away.
        let mut end = Ended(StreamEnd::ClientGone);
        let shutdown = app.shutdown_token();
        let mut ticks = interval_at(Instant::now() + heartbeat, heartbeat);
        let expiry = expires_at.map(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            Instant::now() + left
        });
        let expired = async {
            match expiry {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let frame = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    end.0 = StreamEnd::Shutdown;
                    None
                }
                () = &mut expired => {
                    end.0 = StreamEnd::TokenExpired;
                    None
                }
                entry = subscription.next() => match entry {
                    Some(entry) => {
                        ticks.reset();
                        Some(ready_frames(&app, entry, &mut subscription))
                    }
                    None => {
                        end.0 = StreamEnd::BrokerClosed;
                        None
                    }
                },
                _ = ticks.tick() => Some(Bytes::from_static(sse::HEARTBEAT)),
            };
            let Some(frame) = frame else { break };
            yield Ok(Frame::data(frame));
        }
    };
    StreamBody::new(frames).boxed_unsync()
}

/// The frame of `first`, followed by those of every entry ready right now, up to
/// [`COALESCE_LIMIT`] bytes. A single frame is the shared encoding itself, not a copy.
fn ready_frames(app: &App, first: std::sync::Arc<Entry>, subscription: &mut Subscription) -> Bytes {
    let first = encoded(app, &first);
    let Some(second) = subscription.try_next() else {
        app.metrics().sent(1, first.len());
        return first;
    };
    let mut frames = BytesMut::with_capacity(COALESCE_LIMIT.min(first.len() * 8));
    frames.extend_from_slice(&first);
    frames.extend_from_slice(&encoded(app, &second));
    let mut count = 2;
    while frames.len() < COALESCE_LIMIT {
        let Some(next) = subscription.try_next() else { break };
        frames.extend_from_slice(&encoded(app, &next));
        count += 1;
    }
    app.metrics().sent(count, frames.len());
    frames.freeze()
}

/// Records why an event stream ended when it is dropped, whichever way that happens.
struct Ended(StreamEnd);

impl Drop for Ended {
    fn drop(&mut self) {
        HttpMetrics::stream_ended(self.0);
        tracing::debug!(cause = self.0.as_str(), "event stream ended");
    }
}

fn encoded(app: &App, entry: &Entry) -> Bytes {
    let database = app.broker().database_id();
    entry.encoded(|version| sse::encode(version, &database)).clone()
}
