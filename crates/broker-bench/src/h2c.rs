//! Event streams over HTTP/2 without TLS (h2c with prior knowledge): one connection carries many
//! subscribers' streams, read with the `h2` crate's client and the same frame scanner as
//! HTTP/1.1.
//!
//! A connection is a [`SendRequest`] handle, cloned by every stream opened on it, and a driver
//! task that reads and writes the socket for all of them. Each stream's task receives its body
//! as the DATA frames arrive; the receipt time is read once per DATA frame, as the HTTP/1.1
//! reader reads it once per `read` call.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use bytes::Bytes;
use h2::RecvStream;
use h2::client::SendRequest;

use crate::client::connect;
use crate::clock::now_ns;

/// The receive window of each stream. The server may send this much to a stream before it
/// waits for the window to reopen; as large as a loopback socket's default receive buffer,
/// so that an HTTP/2 subscriber is held back no sooner than an HTTP/1.1 one.
const STREAM_WINDOW: u32 = 128 * 1024;
/// The receive window of a whole connection, shared by its streams: room for every stream of a
/// busy connection to have some bytes in flight (the protocol's default, 64 KiB, would let one
/// connection of a hundred subscribers carry only 64 KiB for all of them).
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// Opens an HTTP/2 connection to `addr` from `source` and starts its driver on the current
/// `LocalSet`; the driver ends when the connection does.
pub(crate) async fn connect_h2(
    addr: SocketAddr,
    source: Ipv4Addr,
) -> anyhow::Result<SendRequest<Bytes>> {
    let tcp = connect(addr, source).await.context("connect")?;
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(tcp)
        .await
        .context("HTTP/2 handshake")?;
    tokio::task::spawn_local(async move {
        // A connection that breaks shows in its streams, which all end with an error.
        let _ = connection.await;
    });
    Ok(send)
}

/// An open event stream on an HTTP/2 connection.
pub(crate) struct H2Reader {
    body: RecvStream,
    /// The end of a frame whose rest has not arrived yet.
    partial: Vec<u8>,
}

impl H2Reader {
    /// Sends `GET path` on the connection `send` and waits for the response head.
    pub(crate) async fn open(
        send: SendRequest<Bytes>,
        addr: SocketAddr,
        path: &str,
    ) -> anyhow::Result<H2Reader> {
        let request = http::Request::get(format!("http://{addr}{path}"))
            .header("accept", "text/event-stream")
            .body(())
            .context("build the request")?;
        let mut send = send.ready().await.context("wait for a stream")?;
        let (response, _) = send.send_request(request, true).context("send the request")?;
        let response = response.await.context("wait for the response")?;
        if response.status() != 200 {
            bail!("the server answered {}", response.status());
        }
        Ok(H2Reader { body: response.into_body(), partial: Vec::new() })
    }

    /// Reads the next DATA frame and calls `on_data` with the data of each complete event stream
    /// frame and the receipt time. `Ok(false)` when the server ended the stream.
    pub(crate) async fn read(
        &mut self,
        mut on_data: impl FnMut(&[u8], u64),
    ) -> anyhow::Result<bool> {
        let Some(data) = self.body.data().await else { return Ok(false) };
        let data = data.context("read")?;
        let now = now_ns();
        // The bytes are taken: the server may send as many again.
        let _ = self.body.flow_control().release_capacity(data.len());
        if self.partial.is_empty() {
            // The usual case, a DATA frame of whole frames: scanned where it lies.
            let used = crate::sse::scan(&data, |frame| on_data(frame, now));
            self.partial.extend_from_slice(&data[used..]);
        } else {
            self.partial.extend_from_slice(&data);
            let used = crate::sse::scan(&self.partial, |frame| on_data(frame, now));
            self.partial.drain(..used);
        }
        Ok(true)
    }
}
