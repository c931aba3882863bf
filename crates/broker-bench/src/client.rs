//! A keep-alive HTTP/1.1 connection for request/response traffic: publishes and health checks.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::http::{Dechunker, Framing, parse_head};

/// Opens a TCP connection to `addr` from `source` (any port; `0.0.0.0` for any address), without
/// Nagle's delay.
pub(crate) async fn connect(addr: SocketAddr, source: Ipv4Addr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if source != Ipv4Addr::UNSPECIFIED {
        socket.bind(SocketAddr::from((source, 0)))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One connection that sends a request and reads its whole response, again and again.
pub(crate) struct Client {
    addr: SocketAddr,
    source: Ipv4Addr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    body: Vec<u8>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr, source: Ipv4Addr) -> Client {
        Client { addr, source, stream: None, buf: Vec::with_capacity(4096), body: Vec::new() }
    }

    /// Sends `request` (connecting first if needed) and returns the status; the body is in
    /// [`body`](Client::body) until the next request.
    pub(crate) async fn request(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        let result = self.exchange(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }

    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        if self.stream.is_none() {
            self.stream = Some(connect(self.addr, self.source).await.context("connect")?);
        }
        let Some(stream) = self.stream.as_mut() else { unreachable!("connected above") };
        stream.write_all(request).await.context("send")?;
        self.buf.clear();
        self.body.clear();
        let head = loop {
            if let Some((head, len)) = parse_head(&self.buf).map_err(anyhow::Error::msg)? {
                self.buf.drain(..len);
                break head;
            }
            if stream.read_buf(&mut self.buf).await.context("read")? == 0 {
                bail!("connection closed before the response");
            }
        };
        match head.framing {
            Framing::Length(len) => {
                while self.buf.len() < len {
                    if stream.read_buf(&mut self.buf).await.context("read")? == 0 {
                        bail!("connection closed inside the response body");
                    }
                }
                self.body.extend_from_slice(&self.buf[..len]);
            }
            Framing::Chunked => {
                let mut decoder = Dechunker::default();
                loop {
                    let used =
                        decoder.decode(&self.buf, &mut self.body).map_err(anyhow::Error::msg)?;
                    self.buf.drain(..used);
                    if decoder.is_done() {
                        break;
                    }
                    if stream.read_buf(&mut self.buf).await.context("read")? == 0 {
                        bail!("connection closed inside the response body");
                    }
                }
            }
            Framing::UntilClose => {
                stream.read_to_end(&mut self.buf).await.context("read")?;
                self.body.extend_from_slice(&self.buf);
                self.stream = None;
            }
        }
        if head.close {
            self.stream = None;
        }
        Ok(head.status)
    }
}

/// `GET path` on a fresh connection, with a deadline: the status and the body.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut client = Client::new(addr, Ipv4Addr::UNSPECIFIED);
    let status = tokio::time::timeout(Duration::from_secs(5), client.request(request.as_bytes()))
        .await
        .context("no answer within 5 s")??;
    Ok((status, client.body().to_vec()))
}
