//! One request over the NATS protocol, written by hand: enough to drive the JetStream API (create
//! a stream, ask for its state, publish a message) from a test, independently of the NATS client
//! library that the code under test uses.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The subject the reply comes back on; unique within the one connection a request opens.
const INBOX: &str = "_INBOX.broker-tests";

/// Connects to the NATS server at `addr` (`127.0.0.1:<port>`), publishes `payload` on `subject`
/// with a reply subject, and returns the reply, which JetStream writes as JSON, or `None` if none
/// comes within `timeout` (a subject that nothing answers comes to this, and so may a JetStream
/// API request while the cluster is busy electing a leader). Panics if the server reports a
/// protocol error.
pub async fn try_request(
    addr: &str,
    subject: &str,
    payload: &[u8],
    timeout: Duration,
) -> Option<Value> {
    exchange(addr, subject, None, payload, timeout).await
}

/// A publish to a stream, with `msg_id` as its `Nats-Msg-Id` header, and its reply, or `None` if
/// none comes within `timeout` (while a stream elects a leader, a publish may go unanswered):
/// JetStream stores one message per id within the stream's duplicate window, so a publish that
/// went unanswered can be sent again without being stored twice (the reply then says
/// `"duplicate": true`, with the first one's sequence).
pub async fn try_publish(
    addr: &str,
    subject: &str,
    msg_id: &str,
    payload: &[u8],
    timeout: Duration,
) -> Option<Value> {
    exchange(addr, subject, Some(msg_id), payload, timeout).await
}

/// Sends one message with a reply subject, with a `Nats-Msg-Id` header if `msg_id` is given,
/// and waits up to `timeout` for the reply.
async fn exchange(
    addr: &str,
    subject: &str,
    msg_id: Option<&str>,
    payload: &[u8],
    timeout: Duration,
) -> Option<Value> {
    let reply = async {
        let stream = TcpStream::connect(addr).await.expect("connect to nats-server");
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::new(reader);
        let mut line = String::new();
        // The server speaks first, with INFO.
        reader.read_line(&mut line).await.expect("read INFO");
        assert!(line.starts_with("INFO "), "nats-server greets with {line:?}, not INFO");
        let mut out = Vec::new();
        // `headers` lets the connection send HPUB, a message with headers.
        out.extend_from_slice(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n",
        );
        out.extend_from_slice(format!("SUB {INBOX} 1\r\n").as_bytes());
        match msg_id {
            None => {
                out.extend_from_slice(
                    format!("PUB {subject} {INBOX} {}\r\n", payload.len()).as_bytes(),
                );
            }
            Some(id) => {
                let headers = format!("NATS/1.0\r\nNats-Msg-Id: {id}\r\n\r\n");
                let total = headers.len() + payload.len();
                let line = format!("HPUB {subject} {INBOX} {} {total}\r\n", headers.len());
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(headers.as_bytes());
            }
        }
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        writer.write_all(&out).await.expect("send the request");
        loop {
            line.clear();
            let read = reader.read_line(&mut line).await.expect("read from nats-server");
            assert!(read > 0, "nats-server closed the connection before it replied");
            let head = line.trim_end();
            if head == "PING" {
                writer.write_all(b"PONG\r\n").await.expect("answer PING");
            } else if let Some(args) = head.strip_prefix("MSG ") {
                // MSG <subject> <sid> [reply-to] <size>: the size is the last word.
                let size = args.rsplit(' ').next().and_then(|size| size.parse::<usize>().ok());
                let size = size.unwrap_or_else(|| panic!("a MSG line without a size: {head:?}"));
                let mut body = vec![0; size + 2];
                reader.read_exact(&mut body).await.expect("read the reply's payload");
                body.truncate(size);
                return serde_json::from_slice(&body).unwrap_or_else(|error| {
                    panic!("the reply is not JSON ({error}): {}", String::from_utf8_lossy(&body))
                });
            } else {
                assert!(!head.starts_with("-ERR"), "nats-server refused the request: {head}");
            }
        }
    };
    tokio::time::timeout(timeout, reply).await.ok()
}
