//! An event stream scanner: finds complete frames in received bytes and hands over their data.
//!
//! Only what the benchmark needs: frames end at an empty line (`\n` or `\r\n` endings), the
//! payload is the last `data:` line of a frame, and everything else (`event:`, `id:`, `retry:`,
//! comments) is skipped. A frame without data (a heartbeat, the prelude) is skipped too.

/// Calls `on_data` with the data of every complete frame at the start of `body`, and returns how
/// many bytes those frames took; the rest is an incomplete frame to scan again with more bytes.
pub(crate) fn scan(body: &[u8], mut on_data: impl FnMut(&[u8])) -> usize {
    let mut consumed = 0;
    let mut at = 0;
    let mut data: Option<(usize, usize)> = None;
    while let Some(newline) = body[at..].iter().position(|&byte| byte == b'\n') {
        let end = at + newline;
        let mut line = &body[at..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            if let Some((start, end)) = data.take() {
                on_data(&body[start..end]);
            }
            consumed = end + 1;
        } else if let Some(value) = line.strip_prefix(b"data:") {
            let skip = usize::from(value.first() == Some(&b' '));
            data = Some((at + 5 + skip, at + line.len()));
        }
        at = end + 1;
    }
    consumed
}

#[cfg(test)]
mod tests {
    use super::scan;

    fn datas(stream: &[u8]) -> (Vec<String>, usize) {
        let mut found = Vec::new();
        let used = scan(stream, |data| found.push(String::from_utf8_lossy(data).into_owned()));
        (found, used)
    }

    #[test]
    fn frames_with_data_are_found_and_the_rest_is_kept() {
        let stream = b"retry: 3000\n: snapshot\n\nevent: a\nid: 1@x\ndata: {\"p\":1}\n\n:\n\ndata:2\r\n\r\nevent: b\ndata: 3";
        let (found, used) = datas(stream);
        assert_eq!(found, ["{\"p\":1}", "2"]);
        assert_eq!(&stream[used..], b"event: b\ndata: 3");
    }
}
