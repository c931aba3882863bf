//! Criterion micro-benchmarks of the SSE encoder, through the public path.
//!
//! The encoder is private to `broker-http`, so these go through `broker_http::handle` with a
//! `GET /events` request, as a subscriber would, on an in-memory store:
//!
//! - `snapshot_fresh/N`: a new broker with N events whose frames were never encoded; one
//!   subscriber reads its snapshot, so every frame is encoded once (the encoder's real cost, plus
//!   one subscription).
//! - `snapshot_cached/N`: the same snapshot read again: frames come from the cache on each
//!   entry. The difference between the two is the encoder.
//! - `live`: one insert and the frame it becomes at a waiting subscriber.

use std::hint::black_box;

use broker_core::{Broker, Config, Json};
use broker_http::{App, Body, HttpConfig, handle};
use broker_storage::{MemoryStorage, NewVersion, Storage};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::header::HOST;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};

/// A 100-byte JSON payload, like the load generator's.
const DATA: &str = r#"{"p":1,"s":1,"t":1234567890123,"x":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// An app on a fresh broker holding `events` events, none of them encoded yet.
async fn app_with(events: usize) -> App {
    let storage = MemoryStorage::new();
    let batch = (0..events).map(|n| NewVersion::new(format!("e{n:05}"), 1, DATA)).collect();
    storage.append(batch).await.expect("append");
    let broker = Broker::open(storage, Config::default()).await.expect("open");
    App::new(broker, HttpConfig::default())
}

async fn subscribe(app: &App) -> Body {
    // An HTTP/1.1 request without `Host` is refused, as a client's would be.
    let request = Request::get("/events")
        .header(HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = handle(app, request).await;
    assert_eq!(response.status(), StatusCode::OK, "GET /events is answered with a stream");
    response.into_body()
}

/// Reads `body` until `frames` frames arrived, after the prelude if `prelude` is set: each frame
/// has four line ends, the prelude three.
async fn read_frames(body: &mut Body, prelude: bool, frames: usize) -> usize {
    let want = if prelude { 3 } else { 0 } + 4 * frames;
    let mut seen = 0;
    let mut bytes = 0;
    while seen < want {
        let frame = body.frame().await.expect("the stream stays open").expect("infallible");
        if let Ok(data) = frame.into_data() {
            seen += data.iter().filter(|&&byte| byte == b'\n').count();
            bytes += data.len();
        }
    }
    bytes
}

fn snapshots(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("sse");
    for events in [1, 100, 1000] {
        group.throughput(Throughput::Elements(events as u64));
        group.bench_function(format!("snapshot_fresh/{events}"), |b| {
            b.iter_batched(
                || runtime.block_on(app_with(events)),
                |app| {
                    runtime.block_on(async {
                        let mut body = subscribe(&app).await;
                        black_box(read_frames(&mut body, true, events).await);
                    });
                    app
                },
                BatchSize::SmallInput,
            )
        });
        let app = runtime.block_on(app_with(events));
        group.bench_function(format!("snapshot_cached/{events}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let mut body = subscribe(&app).await;
                    black_box(read_frames(&mut body, true, events).await);
                })
            })
        });
    }
    group.throughput(Throughput::Elements(1));
    let app = runtime.block_on(app_with(1));
    let mut body = runtime.block_on(async {
        let mut body = subscribe(&app).await;
        read_frames(&mut body, true, 1).await;
        body
    });
    group.bench_function("live", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let data = Json::parse(DATA).expect("valid JSON");
                app.broker().insert("e00000", data).await.expect("insert");
                black_box(read_frames(&mut body, false, 1).await);
            })
        })
    });
    group.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
