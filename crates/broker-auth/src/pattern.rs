//! [`Pattern`]: an event name, or a glob over event names such as `orders.*`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Matches event names: exactly, or with `*` standing for any run of characters (`orders.*`,
/// `*.created`, `*`). No other character is special.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern(Box<str>);

impl Pattern {
    /// The pattern `text`.
    pub fn new(text: impl Into<Box<str>>) -> Pattern {
        Pattern(text.into())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.0.split('*');
        // `split` always yields a first part: the text before the first `*`, maybe empty.
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = name.strip_prefix(first) else { return false };
        let mut parts = parts.peekable();
        if parts.peek().is_none() {
            return rest.is_empty();
        }
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                // The last part must end the name; everything before it is the final `*`.
                return rest.ends_with(part);
            }
            // Leftmost match of a middle part leaves the most room for the parts after it.
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }

    /// Whether the pattern matches every name, whatever it is: `*` (or `**`, and so on).
    ///
    /// Needed where a scope must cover events that no one can list in advance, such as those a
    /// copy of the whole database holds, where matching the names seen so far would not do.
    pub fn matches_everything(&self) -> bool {
        !self.0.is_empty() && self.0.bytes().all(|byte| byte == b'*')
    }

    /// Whether any of `patterns` matches `name`.
    pub fn any(patterns: &[Pattern], name: &str) -> bool {
        patterns.iter().any(|pattern| pattern.matches(name))
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Pattern, D::Error> {
        Ok(Pattern::new(String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    fn check(pattern: &str, matching: &[&str], not_matching: &[&str]) {
        let pattern = Pattern::new(pattern);
        for name in matching {
            assert!(pattern.matches(name), "{pattern} must match {name:?}");
        }
        for name in not_matching {
            assert!(!pattern.matches(name), "{pattern} must not match {name:?}");
        }
    }

    #[test]
    fn patterns_match_exactly_or_by_glob() {
        check("user", &["user"], &["username", "use", "User", "user.x", ""]);
        check("orders.*", &["orders.", "orders.created", "orders.a.b"], &["orders", "order.x"]);
        check("*", &["", "a", "anything at all"], &[]);
        check("*.created", &["orders.created", ".created"], &["orders.created.x", "created"]);
        check("a*b*c", &["abc", "a-b-c", "aXbYbZc"], &["ab", "acb", "abcd"]);
        check("a**", &["a", "abc"], &["b"]);
        check("", &[""], &["a"]);
    }

    #[test]
    fn only_stars_match_everything() {
        for (pattern, everything) in [("*", true), ("**", true), ("a*", false), ("*a", false)] {
            assert_eq!(Pattern::new(pattern).matches_everything(), everything, "{pattern}");
        }
        assert!(!Pattern::new("").matches_everything());
    }
}
