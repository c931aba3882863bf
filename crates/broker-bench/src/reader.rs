//! [`SseReader`]: one event stream over a plain socket, read with a byte scanner.
//!
//! A subscriber costs the load generator one buffer and one task: no HTTP client, no parser
//! objects, no allocation per frame. The receipt time is read once per `read` system call and
//! shared by every frame that call brought. [`EventStream`] is either this or a stream of an
//! HTTP/2 connection ([`H2Reader`]), so that subscribers count both the same way.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::connect;
use crate::clock::now_ns;
use crate::h2c::H2Reader;
use crate::http::{Dechunker, Framing, parse_head};

/// The smallest free space a read gets; frames are small, so this is rarely grown.
const READ_CHUNK: usize = 4096;

/// An open event stream.
pub(crate) struct SseReader {
    stream: TcpStream,
    /// Bytes as received.
    raw: Vec<u8>,
    /// The decoded body, for a chunked response; otherwise `raw` is the body.
    body: Vec<u8>,
    framing: Option<Framing>,
    dechunker: Dechunker,
}

impl SseReader {
    /// Connects to `addr` from `source` and sends `request`.
    pub(crate) async fn open(
        addr: SocketAddr,
        source: Ipv4Addr,
        request: &[u8],
    ) -> anyhow::Result<SseReader> {
        let mut stream = connect(addr, source).await.context("connect")?;
        stream.write_all(request).await.context("send the request")?;
        Ok(SseReader {
            stream,
            raw: Vec::with_capacity(READ_CHUNK),
            body: Vec::new(),
            framing: None,
            dechunker: Dechunker::default(),
        })
    }

    /// Whether the response head has arrived (with status 200).
    pub(crate) fn started(&self) -> bool {
        self.framing.is_some()
    }

    /// Reads what the server sent and calls `on_data` with the data of each complete frame and
    /// the receipt time. `Ok(false)` when the server closed the stream.
    pub(crate) async fn read(
        &mut self,
        mut on_data: impl FnMut(&[u8], u64),
    ) -> anyhow::Result<bool> {
        if self.raw.capacity() - self.raw.len() < READ_CHUNK / 2 {
            self.raw.reserve(READ_CHUNK);
        }
        let read = self.stream.read_buf(&mut self.raw).await.context("read")?;
        let now = now_ns();
        if self.framing.is_none() {
            let Some((head, len)) = parse_head(&self.raw).map_err(anyhow::Error::msg)? else {
                if read == 0 {
                    bail!("connection closed before the response");
                }
                return Ok(true);
            };
            if head.status != 200 {
                bail!("the server answered {}", head.status);
            }
            self.raw.drain(..len);
            self.framing = Some(head.framing);
        }
        if self.framing == Some(Framing::Chunked) {
            let used =
                self.dechunker.decode(&self.raw, &mut self.body).map_err(anyhow::Error::msg)?;
            self.raw.drain(..used);
            let used = crate::sse::scan(&self.body, |data| on_data(data, now));
            self.body.drain(..used);
        } else {
            let used = crate::sse::scan(&self.raw, |data| on_data(data, now));
            self.raw.drain(..used);
        }
        Ok(read > 0 && !self.dechunker.is_done())
    }
}

/// An event stream over either protocol.
pub(crate) enum EventStream {
    H1(SseReader),
    H2(H2Reader),
}

impl EventStream {
    /// Whether the response head has arrived (with status 200); an HTTP/2 stream is opened only
    /// once it has.
    pub(crate) fn started(&self) -> bool {
        match self {
            EventStream::H1(reader) => reader.started(),
            EventStream::H2(_) => true,
        }
    }

    /// As [`SseReader::read`] and [`H2Reader::read`].
    pub(crate) async fn read(&mut self, on_data: impl FnMut(&[u8], u64)) -> anyhow::Result<bool> {
        match self {
            EventStream::H1(reader) => reader.read(on_data).await,
            EventStream::H2(reader) => reader.read(on_data).await,
        }
    }
}
