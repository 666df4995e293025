//! Subject syntax shared by both implementations: dot-separated tokens, `*`
//! matches one token, `>` matches one or more trailing tokens.

use crate::error::{BusError, Result};

/// Checks a subject to publish on: non-empty tokens, no whitespace, no wildcards.
pub fn validate_publish(subject: &str) -> Result<()> {
    validate(subject, false)
}

/// Checks a subject to subscribe to: like [`validate_publish`], but `*` may be a
/// whole token and `>` the whole last token.
pub fn validate_filter(subject: &str) -> Result<()> {
    validate(subject, true)
}

fn validate(subject: &str, wildcards: bool) -> Result<()> {
    let bad = |why| {
        Err(BusError::InvalidSubject {
            subject: subject.to_string(),
            why,
        })
    };
    if subject.is_empty() {
        return bad("empty");
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(t) = tokens.next() {
        if t.is_empty() {
            return bad("has an empty token");
        }
        if t.bytes().any(|b| b.is_ascii_whitespace()) || t.chars().any(char::is_whitespace) {
            return bad("contains whitespace");
        }
        let is_wild = t == "*" || t == ">";
        if is_wild && !wildcards {
            return bad("wildcards are not allowed here");
        }
        if t == ">" && tokens.peek().is_some() {
            return bad("`>` must be the last token");
        }
        if !is_wild && (t.contains('*') || t.contains('>')) {
            return bad("a wildcard must be a whole token");
        }
    }
    Ok(())
}

/// True when `subject` (no wildcards) matches `filter` (may have wildcards).
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_in_nats() {
        assert!(matches("task.*", "task.content-creator"));
        assert!(!matches("task.*", "task.a.b"));
        assert!(matches("task.>", "task.a.b"));
        assert!(!matches("task.>", "task"));
        assert!(matches("run.event.*", "run.event.r1"));
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*.c", "a.b.d"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exact.more"));
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(validate_publish("a.b").is_ok());
        assert!(validate_publish("a.*").is_err());
        assert!(validate_filter("a.*.>").is_ok());
        assert!(validate_filter("a.>.b").is_err());
        assert!(validate_filter("a..b").is_err());
        assert!(validate_filter("a b").is_err());
        assert!(validate_filter("").is_err());
        assert!(validate_filter("a.b*").is_err());
    }
}
