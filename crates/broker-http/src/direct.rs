//! Responses written straight to the socket, without hyper: event streams, and the answers the
//! connection gives before hyper could (the event stream's own errors, refusals).
//!
//! An event stream is most of what a broker's connections are, and it is write-only and endless:
//! once its response head is out, all a connection does is write frames. hyper keeps two 8 KiB
//! buffers per connection for that (one to read, one to write), more than everything else a
//! subscriber costs together. So an event stream's head is written here, once, and then each
//! frame of the body as one chunk, with no buffer of ours in between.
//!
//! A stream ends when its body ends (shutdown, broker closed, token expired: the chunked
//! terminator is written), when the client closes its side or sends more than a request's worth
//! of bytes, or when a write stays blocked for the write timeout.

use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::TRANSFER_ENCODING;
use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Body;
use crate::body::is_event_stream;
use crate::head;
use crate::metrics::CloseCause;
use crate::stall::StallGuard;

/// What a client may send after its request on a direct stream before it is disconnected:
/// nothing is ever read from it, so anything more is abuse.
const MAX_TRAILING: usize = 64 * 1024;

/// Writes `response`: an event stream chunk by chunk until it ends, anything else whole, after
/// which the connection closes.
pub(crate) async fn write_response<S>(
    stream: &mut S,
    response: Response<Body>,
    write_timeout: Duration,
) -> io::Result<CloseCause>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !is_event_stream(&response) {
        // An error answer (401, 403, 400...): whole, then the connection closes.
        write_whole(&mut *stream, response, write_timeout).await?;
        return Ok(CloseCause::Closed);
    }
    let (mut response, mut body) = {
        let (parts, body) = response.into_parts();
        (Response::from_parts(parts, ()), body)
    };
    response.headers_mut().insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    // Frames are written as they come; the guard fails a write that stays blocked, and costs no
    // timer while writes flow. The stream is not split into halves: a TLS stream's reads and
    // writes share one session. A read is only ever waited for beside the body, and dropped (it
    // is cancel-safe) before anything is written.
    let mut io = StallGuard::new(stream, write_timeout);
    let head = head::encode(&response);
    // Only the body lives on: the head's header map would cost an idle subscriber more than the
    // rest of its state.
    drop(response);
    write_out(&mut io, &head).await?;
    drop(head);
    let mut trailing = [0; 512];
    let mut trailing_len = 0;
    loop {
        tokio::select! {
            frame = body.frame() => {
                let Some(Ok(frame)) = frame else {
                    write_out(&mut io, b"0\r\n\r\n").await?;
                    return Ok(CloseCause::Closed);
                };
                if let Ok(data) = frame.into_data() {
                    write_chunk(&mut io, data).await?;
                    io.flush().await?;
                }
            }
            read = io.read(&mut trailing) => {
                match read? {
                    0 => return Ok(CloseCause::Closed),
                    n => {
                        trailing_len += n;
                        if trailing_len > MAX_TRAILING {
                            return Ok(CloseCause::Error);
                        }
                    }
                }
            }
        }
    }
}

/// Writes `bytes` and flushes them: a TLS stream may hold written bytes back until it is
/// flushed (a plain socket flushes at once).
async fn write_out(io: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

/// Writes a response that is not an event stream whole, with `Content-Length` and
/// `Connection: close`.
pub(crate) async fn write_whole(
    io: &mut (impl AsyncWrite + Unpin),
    response: Response<Body>,
    write_timeout: Duration,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
    let mut head = Vec::with_capacity(512);
    head::encode_into(parts.status, &parts.headers, Some(body.len()), true, &mut head);
    let mut whole = Buf::chain(Bytes::from(head), body);
    let mut io = StallGuard::new(io, write_timeout);
    io.write_all_buf(&mut whole).await?;
    io.flush().await
}

/// Writes one chunk of the chunked transfer coding: size line, data, line end, in one vectored
/// write when the socket takes it all.
async fn write_chunk(writer: &mut (impl AsyncWrite + Unpin), data: Bytes) -> io::Result<()> {
    let mut size = [0; 18];
    let size = chunk_size_line(data.len(), &mut size);
    let mut chunk = Buf::chain(size, data).chain(&b"\r\n"[..]);
    while chunk.has_remaining() {
        let mut slices = [IoSlice::new(&[]); 3];
        let count = chunk.chunks_vectored(&mut slices);
        let written = writer.write_vectored(&slices[..count]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        chunk.advance(written);
    }
    Ok(())
}

/// Writes `len` in hexadecimal followed by CRLF into `out`, and returns that part of it.
fn chunk_size_line(len: usize, out: &mut [u8; 18]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut start = 16;
    let mut rest = len;
    loop {
        start -= 1;
        out[start] = DIGITS[rest % 16];
        rest /= 16;
        if rest == 0 {
            break;
        }
    }
    out[16] = b'\r';
    out[17] = b'\n';
    &out[start..]
}
