//! Property tests over raw request bytes: whatever a client sends, the request path answers with
//! a well-formed response or closes the connection, and never panics.
//!
//! Each case drives one real hyper connection, served exactly as `serve` serves a socket, over an
//! in-memory pipe, against a broker on the in-memory backend.

use std::time::Duration;

use broker_core::{Broker, Config};
use broker_storage::MemoryStorage;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use crate::server::{http_builder, serve_connection};
use crate::{App, HttpConfig};

/// Requests that are almost right, so that mutations reach past the request line.
const TEMPLATES: &[&[u8]] = &[
    b"POST /insert HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"event\":\"a\",\"data\":[1,2,3]}",
    b"GET /audit/a?after=0&limit=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"OPTIONS /insert HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: http://o\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    b"POST /insert HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"eve\r\n0\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
];

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        prop::sample::select(TEMPLATES),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..8),
    )
        .prop_map(|(template, edits)| {
            let mut bytes = template.to_vec();
            for (index, byte, kind) in edits {
                let at = index.index(bytes.len() + 1);
                match kind {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => bytes[at] = byte,
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.push(byte),
                }
            }
            bytes
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..512), mutated]
}

/// Sends `bytes`, closes the sending side if `half_close`, and returns everything the server
/// wrote back until it closed the connection.
///
/// A half-closed connection counts as a client that went away: hyper may drop its request
/// without answering, which is how event streams notice their client left.
async fn exchange(app: &App, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let (mut client, server) = duplex(64 * 1024);
    let connection = tokio::spawn(serve_connection(&http_builder(app), app, server));
    client.write_all(bytes).await.expect("write request");
    if half_close {
        client.shutdown().await.expect("half-close");
    }
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut response));
    read.await.expect("the connection ends once the client is done").expect("read response");
    let outcome = connection.await;
    assert!(outcome.is_ok(), "the connection task panicked: {outcome:?}");
    response
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_request_bytes_make_the_server_panic_or_answer_garbage(bytes in request_bytes()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let broker = Broker::open(MemoryStorage::new(), Config::default()).await.expect("open");
            let app = App::new(broker, HttpConfig::default());
            let response = exchange(&app, &bytes, true).await;
            if !response.is_empty() {
                prop_assert!(response.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&response));
                let status = &response[9..12];
                prop_assert!(status != b"500", "{:?}", String::from_utf8_lossy(&response));
            }
            Ok(())
        })?;
    }
}

/// The harness itself: unmutated templates get real answers, so the property above is not
/// vacuously true of a connection that answers nothing.
#[tokio::test]
async fn templates_are_answered() {
    let broker = Broker::open(MemoryStorage::new(), Config::default()).await.expect("open");
    let app = App::new(broker, HttpConfig::default());
    for (template, status) in TEMPLATES.iter().zip(["201", "200", "204", "400", "200"]) {
        let response = exchange(&app, template, false).await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{status}: {text}");
    }
}
