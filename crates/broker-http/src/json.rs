//! JSON bodies the transport writes: versions and lists of versions.
//!
//! Version data is compact JSON already, so it is copied into the output as it is rather than
//! parsed and written again.

use broker_core::Version;

/// Writes `version` as `{"id":…,"event":…,"timestamp":…,"data":…}`.
pub(crate) fn write_version(out: &mut Vec<u8>, version: &Version) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(itoa::Buffer::new().format(version.id).as_bytes());
    out.extend_from_slice(b",\"event\":");
    // Serializing a string into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, &version.event);
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
