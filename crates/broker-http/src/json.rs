//! JSON bodies the transport writes: versions and lists of versions.
//!
//! Version data is compact JSON already, so it is copied into the output as it is rather than
//! parsed and written again.

use std::convert::Infallible;

use broker_core::Version;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use crate::body::Body;

/// A streamed JSON body is sent in chunks of about this many bytes, so that a long answer never
/// sits whole in memory as text.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Writes `version` as `{"id":…,"event":…,"timestamp":…,"data":…}`.
pub(crate) fn write_version(out: &mut Vec<u8>, version: &Version) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(itoa::Buffer::new().format(version.id).as_bytes());
    out.extend_from_slice(b",\"event\":");
    // Serializing a string into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, &*version.event);
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(itoa::Buffer::new().format(version.timestamp).as_bytes());
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(version.data.as_bytes());
    out.push(b'}');
}

/// Writes `versions` as a JSON array.
pub(crate) fn write_versions<'a>(
    out: &mut Vec<u8>,
    versions: impl IntoIterator<Item = &'a Version>,
) {
    out.push(b'[');
    for (index, version) in versions.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_version(out, version);
    }
    out.push(b']');
}

/// A JSON array of `items`, encoded a chunk at a time as the body is read.
pub(crate) fn versions_body<T, F>(items: Vec<T>, version: F) -> Body
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> &Version + Send + Sync + 'static,
{
    let chunks = async_stream::stream! {
        let mut out = Vec::with_capacity(CHUNK + 1024);
        out.push(b'[');
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_version(&mut out, version(item));
            if out.len() >= CHUNK {
                yield Ok::<_, Infallible>(Frame::data(Bytes::from(std::mem::take(&mut out))));
            }
        }
        out.push(b']');
        yield Ok(Frame::data(Bytes::from(out)));
    };
    StreamBody::new(chunks).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_written_as_valid_json_with_data_verbatim() {
        let versions = [
            Version { id: 1, event: "a\"b".into(), timestamp: 5, data: r#"{"x":[1,2.50]}"#.into() },
            Version { id: 2, event: "é".into(), timestamp: 6, data: "null".into() },
        ];
        let mut out = Vec::new();
        write_versions(&mut out, &versions);
        let text = String::from_utf8(out).expect("UTF-8");
        assert_eq!(
            text,
            r#"[{"id":1,"event":"a\"b","timestamp":5,"data":{"x":[1,2.50]}},{"id":2,"event":"é","timestamp":6,"data":null}]"#
        );
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
    }
}
