//! HTTP/2 frames as bytes: the connection preface, which tells an HTTP/2 connection from an
//! HTTP/1.1 one.

/// The first bytes of every HTTP/2 connection, sent by the client (RFC 9113, section 3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
