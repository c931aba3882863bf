//! SSE parsing: decoded body bytes to [`Frame`]s, as the WHATWG EventSource algorithm splits
//! them, with every event checked against PROTOCOL.md.

use serde_json::Value;

/// One thing the stream said, in the order it said it.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A `retry:` field, in milliseconds.
    Retry(u64),
    /// A comment line, without the colon and the one space after it.
    Comment(String),
    /// An event, dispatched by a blank line.
    Event(Event),
}

/// An event frame, checked to have exactly the shape PROTOCOL.md gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The `event:` field.
    pub event: String,
    /// The id part of the `id:` field.
    pub id: u64,
    /// The database part of the `id:` field.
    pub database: String,
    /// The one `data:` line, as sent.
    pub data: String,
}

impl Event {
    /// The data, parsed.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("checked when the frame was parsed")
    }

    /// The `id:` field as sent, which a client gives back as `Last-Event-ID`.
    pub fn last_event_id(&self) -> String {
        format!("{}@{}", self.id, self.database)
    }

    /// What identifies the version: event, id and the data's text.
    pub fn key(&self) -> (String, u64, String) {
        (self.event.clone(), self.id, self.data.clone())
    }
}

/// Splits decoded stream text into lines and lines into frames.
#[derive(Debug, Default)]
pub struct Parser {
    /// Decoded bytes not yet split into lines.
    text: Vec<u8>,
    /// How much of `text` the last `next_frame` saw.
    seen: usize,
    /// The fields of the event being read, since the last blank line.
    block: Vec<String>,
}

impl Parser {
    /// Where decoded bytes go.
    pub fn input(&mut self) -> &mut Vec<u8> {
        &mut self.text
    }

    /// Whether bytes arrived since `next_frame` last looked.
    pub fn has_new_input(&self) -> bool {
        self.text.len() > self.seen
    }

    /// Checks that the stream did not end in the middle of a line or an event.
    pub fn assert_empty(&self) {
        assert!(
            self.text.is_empty() && self.block.is_empty(),
            "the stream ended inside a frame: {:?} {:?}",
            self.block,
            String::from_utf8_lossy(&self.text)
        );
    }

    /// Takes complete lines until one completes a frame; `None` when the text has no complete
    /// line left. Once the body has `ended`, a trailing CR is a whole line break.
    pub fn next_frame(&mut self, ended: bool) -> Option<Frame> {
        loop {
            let end = self.text.iter().position(|&b| b == b'\n' || b == b'\r');
            // A CR at the end of what arrived may be the first half of a CRLF.
            let partial = |end: usize| self.text[end] == b'\r' && end + 1 == self.text.len();
            let Some(end) = end.filter(|&end| ended || !partial(end)) else {
                self.seen = self.text.len();
                return None;
            };
            let skip = if self.text[end..].starts_with(b"\r\n") { 2 } else { 1 };
            let line: Vec<u8> = self.text.drain(..end + skip).take(end).collect();
            let line = String::from_utf8(line).expect("the event stream is UTF-8");
            if let Some(frame) = self.line(line) {
                return Some(frame);
            }
        }
    }

    /// Handles one line; returns a frame when the line completes one.
    fn line(&mut self, line: String) -> Option<Frame> {
        if line.is_empty() {
            if self.block.is_empty() {
                return None;
            }
            let block = std::mem::take(&mut self.block);
            return Some(Frame::Event(check_event(&block)));
        }
        if let Some(comment) = line.strip_prefix(':') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            return Some(Frame::Comment(comment.to_string()));
        }
        let (name, value) = split_field(&line);
        if name == "retry" {
            assert!(self.block.is_empty(), "retry: inside an event: {:?} {line:?}", self.block);
            let retry =
                value.parse().unwrap_or_else(|_| panic!("retry: {value:?} is not a number"));
            return Some(Frame::Retry(retry));
        }
        self.block.push(line);
        None
    }
}

/// Splits a field line as EventSource does: the name up to the first colon, the value after it
/// without one leading space.
fn split_field(line: &str) -> (&str, &str) {
    match line.split_once(':') {
        Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    }
}

/// Checks an event's lines: exactly one `event:`, one `id: <n>@<32 hex>` and one `data:` line of
/// compact JSON, and no other field.
fn check_event(block: &[String]) -> Event {
    let mut event = None;
    let mut id = None;
    let mut data = None;
    for line in block {
        let (name, value) = split_field(line);
        let slot = match name {
            "event" => &mut event,
            "id" => &mut id,
            "data" => &mut data,
            _ => panic!("unexpected field {line:?} in {block:?}"),
        };
        assert!(slot.is_none(), "{name}: appears twice in {block:?}");
        *slot = Some(value.to_string());
    }
    let event = event.unwrap_or_else(|| panic!("no event: in {block:?}"));
    let id = id.unwrap_or_else(|| panic!("no id: in {block:?}"));
    let data = data.unwrap_or_else(|| panic!("no data: in {block:?}"));
    let (number, database) =
        parse_id(&id).unwrap_or_else(|| panic!("id: {id:?} is not <n>@<32 hex>"));
    let _: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("data: {data:?}: {e}"));
    assert!(is_compact(&data), "data: {data:?} is not compact JSON");
    Event { event, id: number, database: database.to_string(), data }
}

/// Splits `<n>@<database>`, checking that the database is 32 lower-case hex digits.
fn parse_id(id: &str) -> Option<(u64, &str)> {
    let (number, database) = id.split_once('@')?;
    let digits = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    let hex =
        database.len() == 32 && database.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !(digits && hex) {
        return None;
    }
    Some((number.parse().ok()?, database))
}

/// Whether `json` has no white space outside strings.
fn is_compact(json: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            return false;
        }
    }
    true
}
