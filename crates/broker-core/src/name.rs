//! Event name validation.

use crate::Error;

/// The longest event name, in bytes, that a broker accepts unless configured otherwise.
pub const DEFAULT_MAX_EVENT_NAME_LEN: usize = 256;

/// Checks that `name` can be an event name: not empty, at most `max_len` bytes, and free of
/// control characters.
///
/// Control characters are refused because an event name is written into SSE frames: a CR, LF or
/// NUL in it would let a publisher end the `event:` line and forge `id:`, `data:` or `retry:`
/// fields in every subscriber's stream.
pub fn validate_event_name(name: &str, max_len: usize) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::InvalidEventName("the event name is empty".into()));
    }
    if name.len() > max_len {
        return Err(Error::InvalidEventName(format!(
            "the event name is {} bytes long, more than the limit of {max_len}",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(Error::InvalidEventName(format!(
            "the event name contains the control character {:?}",
            c
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_event_name;

    #[test]
    fn names_with_control_characters_empty_or_too_long_are_rejected() {
        for bad in ["", "a\nid: 7", "a\rb", "a\0", "\u{85}", "tab\t", &"x".repeat(257)] {
            assert!(validate_event_name(bad, 256).is_err(), "{bad:?} must be rejected");
        }
        for good in ["user", "orders.created", "naïve café 🦀", " space", "a:b/c", &"x".repeat(256)]
        {
            assert!(validate_event_name(good, 256).is_ok(), "{good:?} must be accepted");
        }
    }
}
