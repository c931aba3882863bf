//! HTTP/2 frames as bytes: the connection preface, where each frame of a byte stream begins,
//! and the one frame the transport writes itself, GOAWAY.
//!
//! h2 parses and writes every frame; the transport only needs to know frame boundaries and
//! frame heads (RFC 9113, section 4.1): to count what a client sends (`h2_flood.rs`), and to
//! put a GOAWAY between two of h2's frames rather than inside one.

/// The first bytes of every HTTP/2 connection, sent by the client (RFC 9113, section 3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The length of a frame head: 24-bit length, type, flags, 31-bit stream id.
const HEAD_LEN: usize = 9;

/// Frame types (RFC 9113, section 6).
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const PRIORITY: u8 = 0x2;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
/// The last frame type RFC 9113 defines; a frame of a greater type is an extension's, which h2
/// reads and ignores.
pub(crate) const CONTINUATION: u8 = 0x9;

/// The ACK flag of SETTINGS and PING.
pub(crate) const ACK: u8 = 0x1;

/// The error code of a GOAWAY sent to a client that asks for too much (RFC 9113, section 7).
pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;
/// The error code of a GOAWAY sent to a connection refused before any of its streams was
/// processed: the client may retry them, later or elsewhere (RFC 9113, section 7).
pub(crate) const REFUSED_STREAM: u32 = 0x7;

/// The head of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHead {
    pub(crate) len: usize,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) stream: u32,
}

/// Follows a stream of frames that arrives in pieces of any size, and tells the head of each.
///
/// It holds nine bytes at most: a head cut between two pieces. Payloads are skipped, never
/// kept.
#[derive(Debug)]
pub(crate) struct Scanner {
    /// Bytes of the client's connection preface still to skip.
    preface: usize,
    head: [u8; HEAD_LEN],
    /// How much of `head` has arrived.
    head_len: usize,
    /// Payload bytes of the current frame still to come.
    payload: usize,
}

impl Scanner {
    /// A scanner of what a client sends: the preface, then frames.
    pub(crate) fn client() -> Scanner {
        Scanner { preface: PREFACE.len(), head: [0; HEAD_LEN], head_len: 0, payload: 0 }
    }

    /// A scanner of what a server sends: frames from the first byte.
    pub(crate) fn server() -> Scanner {
        Scanner { preface: 0, ..Scanner::client() }
    }

    /// Reads `bytes`, the next piece of the stream, and calls `frame` with the head of every
    /// frame whose head ends in it.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut frame: impl FnMut(FrameHead)) {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let skipped = self.preface.min(bytes.len());
                self.preface -= skipped;
                bytes = &bytes[skipped..];
            } else if self.payload > 0 {
                let skipped = self.payload.min(bytes.len());
                self.payload -= skipped;
                bytes = &bytes[skipped..];
            } else {
                let taken = (HEAD_LEN - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + taken].copy_from_slice(&bytes[..taken]);
                self.head_len += taken;
                bytes = &bytes[taken..];
                if self.head_len == HEAD_LEN {
                    self.head_len = 0;
                    let head = parse_head(&self.head);
                    self.payload = head.len;
                    frame(head);
                }
            }
        }
    }

    /// Whether the bytes so far end exactly at the end of a frame (or of the preface).
    pub(crate) fn at_boundary(&self) -> bool {
        self.preface == 0 && self.head_len == 0 && self.payload == 0
    }
}

fn parse_head(head: &[u8; HEAD_LEN]) -> FrameHead {
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    FrameHead { len, kind: head[3], flags: head[4], stream }
}

/// An empty SETTINGS frame: the server's preface when it has nothing to change.
pub(crate) fn settings() -> [u8; HEAD_LEN] {
    let mut frame = [0; HEAD_LEN];
    frame[3] = SETTINGS;
    frame
}

/// A GOAWAY frame: the connection closes, streams up to `last_stream` may have been processed,
/// for the reason `code`.
pub(crate) fn go_away(last_stream: u32, code: u32) -> [u8; HEAD_LEN + 8] {
    let mut frame = [0; HEAD_LEN + 8];
    frame[2] = 8;
    frame[3] = GOAWAY;
    frame[9..13].copy_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    frame[13..17].copy_from_slice(&code.to_be_bytes());
    frame
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame of `kind` with `flags` on `stream`, carrying `payload`, as a client sends it.
    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len().to_be_bytes();
        let mut bytes = vec![len[5], len[6], len[7], kind, flags];
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Feeds `bytes` cut into pieces of `piece` bytes, and returns every head seen and whether
    /// the scanner ended at a boundary.
    fn check(mut scanner: Scanner, bytes: &[u8], piece: usize) -> (Vec<FrameHead>, bool) {
        let mut heads = Vec::new();
        for chunk in bytes.chunks(piece) {
            scanner.feed(chunk, |head| heads.push(head));
        }
        (heads, scanner.at_boundary())
    }

    #[test]
    fn heads_are_found_whatever_the_pieces_the_bytes_come_in() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(HEADERS, 0x5, 1, b"header block"));
        bytes.extend(frame(RST_STREAM, 0, 0x8000_0003, &[0, 0, 0, 8]));
        bytes.extend(frame(PING, ACK, 0, &[0; 8]));
        let expected = vec![
            FrameHead { len: 6, kind: SETTINGS, flags: 0, stream: 0 },
            FrameHead { len: 12, kind: HEADERS, flags: 0x5, stream: 1 },
            // The reserved bit is not part of the id.
            FrameHead { len: 4, kind: RST_STREAM, flags: 0, stream: 3 },
            FrameHead { len: 8, kind: PING, flags: ACK, stream: 0 },
        ];
        for piece in [1, 2, 5, 9, 10, 24, 25, 1000] {
            assert_eq!(
                check(Scanner::client(), &bytes, piece),
                (expected.clone(), true),
                "{piece}"
            );
        }
        let (heads, boundary) = check(Scanner::client(), &bytes[..bytes.len() - 3], 7);
        assert_eq!((heads, boundary), (expected, false));
        let (heads, boundary) = check(Scanner::server(), &bytes[PREFACE.len()..][..4], 1);
        assert_eq!((heads.len(), boundary), (0, false));
    }

    #[test]
    fn go_away_names_the_last_stream_and_the_reason() {
        let frame = go_away(7, ENHANCE_YOUR_CALM);
        let (heads, boundary) = check(Scanner::server(), &frame, 3);
        assert_eq!(heads, vec![FrameHead { len: 8, kind: GOAWAY, flags: 0, stream: 0 }]);
        assert!(boundary);
        assert_eq!(frame[9..], [0, 0, 0, 7, 0, 0, 0, 0xb]);
    }
}
