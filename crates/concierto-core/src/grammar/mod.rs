//! Grammars of the strings in a studio file.
//!
//! A studio's YAML keeps a few small languages inside plain strings:
//!
//! * durations and cycle times: `"6 hours"`, `"90s"`, `"immediate"` ([`parse_duration`], [`CycleTime`]);
//! * schedules and time zones: `"09:00"`, `"Monday 10:00"`, `"0 9 * * MON-FRI"`, `"Europe/Madrid"`
//!   ([`Schedule`], [`parse_timezone`]);
//! * targets and improvements: `"< 2 hours"`, `10`, `"5% weekly"` ([`Target`], [`Improvement`]);
//! * predicates: `"engagement_rate < 0.05"` ([`Predicate`]).
//!
//! Every parser is a small hand-written one that never panics, reports failures with one
//! error type, [`GrammarError`], and has a `Display` that parses back to the same value.

mod duration;
mod predicate;
mod schedule;
mod target;

pub use duration::{CycleTime, format_duration, parse_duration};
pub use predicate::Predicate;
pub use schedule::{Schedule, parse_timezone};
pub use target::{Comparison, Improvement, Period, Quantity, Target};

/// One error type for all grammars.
///
/// It names the rejected input, what kind of string was expected there and why the input
/// is not one, for example `"6 parsecs" is not a duration: unknown unit "parsecs" …`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{input:?} is not {expected}: {detail}")]
pub struct GrammarError {
    /// The string that was rejected, as given.
    pub input: String,
    /// What the string should have been, such as `"a duration"`.
    pub expected: &'static str,
    /// Why the string is not one.
    pub detail: String,
}

impl GrammarError {
    /// Builds an error for `input`.
    pub(crate) fn new(input: &str, expected: &'static str, detail: impl Into<String>) -> Self {
        Self {
            input: input.to_string(),
            expected,
            detail: detail.into(),
        }
    }
}

/// Parses a plain decimal number such as `10`, `-0.5`, `.25` or `1e-3`, which must be finite.
///
/// The error is a detail for a [`GrammarError`].
pub(crate) fn parse_number(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let allowed = |c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E');
    if text.is_empty() {
        return Err("a number is missing".to_string());
    }
    if !text.chars().all(allowed) || !text.chars().any(|c| c.is_ascii_digit()) {
        return Err(format!("{text:?} is not a number"));
    }
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("{text:?} is too large"))
    }
}

/// Parses a number as [`parse_number`] does, or a percentage such as `5%` meaning `0.05`.
///
/// The error is a detail for a [`GrammarError`].
pub(crate) fn parse_number_or_percent(text: &str) -> Result<f64, String> {
    match text.trim().strip_suffix('%') {
        Some(percent) => parse_number(percent).map(|value| value / 100.0),
        None => parse_number(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn error_message_names_input_expectation_and_detail() {
        let error = GrammarError::new("6 parsecs", "a duration", "unknown unit");
        assert_eq!(
            error.to_string(),
            r#""6 parsecs" is not a duration: unknown unit"#
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("10"), Ok(10.0));
        assert_eq!(parse_number(" 0.85 "), Ok(0.85));
        assert_eq!(parse_number("-0.5"), Ok(-0.5));
        assert_eq!(parse_number(".25"), Ok(0.25));
        assert_eq!(parse_number("1e-3"), Ok(0.001));
        for bad in [
            "", " ", "abc", "inf", "NaN", "infinity", "1e999", "1.2.3", "e5", "--1", "1 2",
        ] {
            assert!(parse_number(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_number_or_percent("5%"), Ok(0.05));
        assert_eq!(parse_number_or_percent(" 12.5 % "), Ok(0.125));
        assert_eq!(parse_number_or_percent("0.05"), Ok(0.05));
        assert!(parse_number_or_percent("%").is_err());
        assert!(parse_number_or_percent("5%%").is_err());
    }

    proptest! {
        #[test]
        fn number_display_round_trips(value in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
            prop_assert_eq!(parse_number(&value.to_string()), Ok(value));
        }

        #[test]
        fn number_parser_never_panics(text in any::<String>()) {
            let _ = parse_number(&text);
            let _ = parse_number_or_percent(&text);
        }

        #[test]
        fn number_parser_never_panics_on_its_alphabet(text in "[0-9eE+.\\- ]{0,24}") {
            if let Ok(value) = parse_number(&text) {
                prop_assert!(value.is_finite());
            }
        }
    }
}
