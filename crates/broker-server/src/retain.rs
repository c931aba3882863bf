//! `--retain PATTERN=RULE`: the retention rules, parsed into the engine's.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use broker_auth::Pattern;
use broker_core::RetentionRule;

/// One `--retain` rule as written: the events it governs and what they keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retain {
    /// The events, as a pattern such as `metrics.*`.
    pub pattern: String,
    /// Keep at most this many of each event's newest versions.
    pub keep_last: Option<u64>,
    /// Keep no version older than this.
    pub max_age: Option<Duration>,
}

impl Retain {
    /// The engine's rule.
    pub fn to_rule(&self) -> RetentionRule {
        let pattern = Pattern::new(self.pattern.as_str());
        let mut rule = RetentionRule::new(self.pattern.as_str(), move |name| pattern.matches(name));
        if let Some(count) = self.keep_last {
            rule = rule.keep_last(count);
        }
        if let Some(age) = self.max_age {
            rule = rule.max_age(age);
        }
        rule
    }
}

impl FromStr for Retain {
    type Err = String;

    /// `PATTERN=N`, `PATTERN=AGE` or `PATTERN=N,AGE`, such as `metrics.*=100,7d`.
    fn from_str(text: &str) -> Result<Retain, String> {
        let usage = "write PATTERN=RULE, where RULE is a count of versions (`100`), an age \
                     (`30d`, `12h`), or both (`100,30d`)";
        let (pattern, rule) =
            text.rsplit_once('=').ok_or_else(|| format!("{text:?} has no `=`: {usage}"))?;
        if pattern.is_empty() {
            return Err(format!("{text:?} has no pattern before `=`: {usage}"));
        }
        let mut retain = Retain { pattern: pattern.to_owned(), keep_last: None, max_age: None };
        for part in rule.split(',').map(str::trim) {
            if !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()) {
                let count: u64 =
                    part.parse().map_err(|_| format!("{part:?} is too large a count"))?;
                if count == 0 || retain.keep_last.replace(count).is_some() {
                    return Err(format!(
                        "{text:?}: the count must be given once and be at least 1 (the latest \
                         version is always kept)"
                    ));
                }
            } else {
                let age = humantime::parse_duration(part).map_err(|error| {
                    format!("{text:?}: {part:?} is not a count or an age ({error}): {usage}")
                })?;
                if age.is_zero() || retain.max_age.replace(age).is_some() {
                    return Err(format!(
                        "{text:?}: the age must be given once and be longer than 0"
                    ));
                }
            }
        }
        Ok(retain)
    }
}

impl fmt::Display for Retain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.pattern)?;
        let count = self.keep_last.map(|count| count.to_string());
        let age = self.max_age.map(|age| humantime::format_duration(age).to_string());
        let parts: Vec<String> = count.into_iter().chain(age).collect();
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_a_count_an_age_or_both() {
        let day = Duration::from_secs(24 * 3600);
        let parse = |text: &str| text.parse::<Retain>();
        let both = parse("metrics.*=100,30d").expect("both");
        assert_eq!((both.keep_last, both.max_age), (Some(100), Some(30 * day)));
        assert_eq!(parse("a=7").expect("a count").keep_last, Some(7));
        assert_eq!(parse("a=12h").expect("an age").max_age, Some(day / 2));
        assert_eq!(parse("a=b=5").expect("= in the pattern").pattern, "a=b");
        assert_eq!(both.to_string(), "metrics.*=100,30days");
        assert!(both.to_rule().matches("metrics.cpu") && !both.to_rule().matches("orders"));
        for bad in ["", "a", "=5", "a=", "a=0", "a=0s", "a=5,6", "a=1d,2d", "a=soon", "a=-1"] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
