//! [`RetentionRule`]: which events keep how much of their history.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use broker_storage::Retention;

use crate::filter::EventPredicate;

/// How much history the events a rule matches keep: at most their newest `keep_last` versions,
/// and no version older than `max_age`, whichever bound is tighter. The latest version of every
/// event is kept whatever the rule says, so the snapshot never loses an event.
///
/// A broker applies the first rule of [`Config::retention`](crate::Config::retention) that
/// matches an event; an event no rule matches keeps every version.
///
/// ```
/// use std::time::Duration;
/// use broker_core::RetentionRule;
///
/// let rule = RetentionRule::new("metrics.*", |name| name.starts_with("metrics."))
///     .keep_last(100)
///     .max_age(Duration::from_secs(7 * 24 * 3600));
/// assert!(rule.matches("metrics.cpu"));
/// ```
#[derive(Clone)]
pub struct RetentionRule {
    pattern: Box<str>,
    matches: Arc<EventPredicate>,
    keep_last: Option<u64>,
    max_age: Option<Duration>,
}

impl RetentionRule {
    /// A rule for the events `matches` accepts, described as `pattern` in logs; it keeps
    /// everything until [`keep_last`](RetentionRule::keep_last) or
    /// [`max_age`](RetentionRule::max_age) bounds it.
    pub fn new(
        pattern: impl Into<Box<str>>,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> RetentionRule {
        RetentionRule {
            pattern: pattern.into(),
            matches: Arc::new(matches),
            keep_last: None,
            max_age: None,
        }
    }

    /// Keeps at most the newest `count` versions of each event (at least the latest).
    pub fn keep_last(self, count: u64) -> RetentionRule {
        RetentionRule { keep_last: Some(count), ..self }
    }

    /// Keeps no version older than `age` (except each event's latest).
    pub fn max_age(self, age: Duration) -> RetentionRule {
        RetentionRule { max_age: Some(age), ..self }
    }

    /// The pattern the rule was described with.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the rule applies to `event`.
    pub fn matches(&self, event: &str) -> bool {
        (self.matches)(event)
    }

    /// The most versions of an event kept, if bounded.
    pub fn kept_versions(&self) -> Option<u64> {
        self.keep_last
    }

    /// The oldest a kept version may be, if bounded.
    pub fn kept_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// What the storage keeps of an event under this rule at `now` (milliseconds since the
    /// epoch).
    pub(crate) fn retention(&self, now: u64) -> Retention {
        let age = |age: Duration| u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        Retention {
            keep_last: self.keep_last,
            keep_since: self.max_age.map(|max_age| now.saturating_sub(age(max_age))),
        }
    }
}

impl fmt::Debug for RetentionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetentionRule")
            .field("pattern", &self.pattern)
            .field("keep_last", &self.keep_last)
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// The rule of `rules` that governs `event`: the first that matches.
pub(crate) fn rule_for<'a>(rules: &'a [RetentionRule], event: &str) -> Option<&'a RetentionRule> {
    rules.iter().find(|rule| rule.matches(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_governs_and_bounds_turn_into_a_retention() {
        let rules = [
            RetentionRule::new("a", |name| name == "a").keep_last(3),
            RetentionRule::new("*", |_| true).max_age(Duration::from_secs(10)),
        ];
        let a = rule_for(&rules, "a").expect("a rule");
        assert_eq!(a.retention(50_000), Retention::last(3));
        let other = rule_for(&rules, "b").expect("the catch-all");
        assert_eq!(other.retention(50_000), Retention::since(40_000));
        assert!(rule_for(&rules[..1], "b").is_none(), "an unmatched event keeps everything");
    }
}
