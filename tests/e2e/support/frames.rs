//! [`RawH2`]: HTTP/2 frames written and read by hand over TCP, for what no well-behaved client
//! sends: more streams than the server allows, streams reset as soon as they open, floods of
//! control frames.
//!
//! Requests are encoded with HPACK literals only (no Huffman coding, no dynamic table), which
//! every decoder reads; responses are not decoded, only their frames' types, streams and error
//! codes are looked at.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frame types and flags (RFC 9113, section 6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

/// Error codes (RFC 9113, section 7).
pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame as read.
#[derive(Clone, Debug)]
pub struct RawFrame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The error code of a RST_STREAM or a GOAWAY.
    pub fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        let bytes = self.payload[at..at + 4].try_into().expect("an error code");
        u32::from_be_bytes(bytes)
    }
}

/// One frame as bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a frame's length").to_be_bytes();
    let mut bytes = vec![len[1], len[2], len[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A whole `GET path` on `stream`: one HEADERS frame that ends the stream.
pub fn get(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http, from the static table
    literal(&mut block, 4, path.as_bytes()); // :path
    literal(&mut block, 1, b"127.0.0.1"); // :authority
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &block)
}

/// RST_STREAM of `stream` with `code`.
pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// A header field "literal without indexing" whose name is entry `name` of the static table.
fn literal(block: &mut Vec<u8>, name: u8, value: &[u8]) {
    block.push(name);
    integer(block, 7, 0, value.len());
    block.extend_from_slice(value);
}

/// An HPACK integer with an `prefix`-bit prefix, the bits above it set to `high`.
fn integer(block: &mut Vec<u8>, prefix: u32, high: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        block.push(high | value as u8);
        return;
    }
    block.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
}

/// A connection that speaks HTTP/2 frame by frame.
pub struct RawH2 {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawH2 {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr) -> RawH2 {
        let stream = TcpStream::connect(addr).await.expect("connect");
        // Frames go out as they are written, as a client in a hurry sends them.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let mut raw = RawH2 { stream, buffer: Vec::new() };
        let mut start = PREFACE.to_vec();
        start.extend(frame(SETTINGS, 0, 0, &[]));
        raw.send(&start).await;
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next frame; `None` once the server closed (or reset) the connection. Panics if
    /// neither happens within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<RawFrame> {
        let reading = async {
            loop {
                if self.buffer.len() >= 9 {
                    let len = usize::from(self.buffer[0]) << 16
                        | usize::from(self.buffer[1]) << 8
                        | usize::from(self.buffer[2]);
                    if self.buffer.len() >= 9 + len {
                        let head: Vec<u8> = self.buffer.drain(..9).collect();
                        let payload = self.buffer.drain(..len).collect();
                        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
                        let (kind, flags) = (head[3], head[4]);
                        return Some(RawFrame { kind, flags, stream, payload });
                    }
                }
                let mut chunk = [0; 16 * 1024];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(timeout, reading)
            .await
            .unwrap_or_else(|_| panic!("neither a frame nor a close within {timeout:?}"))
    }

    /// Reads frames until one that `wanted` picks, which it returns with the frames before it;
    /// `None` for the frame if the connection closed first.
    pub async fn until(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&RawFrame) -> bool,
    ) -> (Vec<RawFrame>, Option<RawFrame>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(frame) if wanted(&frame) => return (before, Some(frame)),
                Some(frame) => before.push(frame),
                None => return (before, None),
            }
        }
    }
}
