//! Predicates on metrics, such as `"engagement_rate < 0.05"`.
//!
//! Grammar, with spaces anywhere between the parts:
//!
//! ```text
//! predicate  := metric comparison value
//! metric     := [a-z_] [a-z0-9_.]*
//! comparison := "<" | "<=" | ">" | ">=" | "==" | "!="
//! value      := number | number "%"          finite; "5%" is 0.05
//! ```

use std::fmt;
use std::str::FromStr;

use super::target::split_comparison;
use super::{Comparison, GrammarError, parse_number_or_percent};

const EXPECTED: &str = "a predicate";

/// A condition on one metric: `metric op value`, such as `engagement_rate < 0.05`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    /// The metric's name: lowercase letters, digits, `_` and `.`, not starting with a digit
    /// or `.`.
    pub metric: String,
    /// How the observed metric is compared with `value`.
    pub op: Comparison,
    /// The finite value the metric is compared with.
    pub value: f64,
}

/// Whether `c` may appear in a metric name after its first character.
fn is_metric_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'
}

impl Predicate {
    /// Parses `"engagement_rate < 0.05"` and the like: a lowercase metric name, one of `<`,
    /// `<=`, `>`, `>=`, `==`, `!=`, and a finite number (`"5%"` means `0.05`). Spaces between
    /// the parts are optional.
    pub fn parse(s: &str) -> Result<Self, GrammarError> {
        let error = |detail: String| GrammarError::new(s, EXPECTED, detail);
        let text = s.trim();
        let metric_end = text.find(|c| !is_metric_char(c)).unwrap_or(text.len());
        let (metric, rest) = text.split_at(metric_end);
        let rest = rest.trim_start();
        if rest.starts_with(|c: char| c.is_uppercase()) {
            return Err(error(
                "metric names are lowercase (letters, digits, _ and .)".into(),
            ));
        }
        if metric.is_empty() {
            return Err(error(
                "it should start with a metric name, as in \"engagement_rate < 0.05\"".into(),
            ));
        }
        if metric.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Err(error(format!(
                "the metric name {metric:?} must start with a lowercase letter or _"
            )));
        }
        let Some((op, value)) = split_comparison(rest) else {
            return Err(error(format!(
                "expected a comparison (<, <=, >, >=, ==, !=) after {metric:?}"
            )));
        };
        let value = parse_number_or_percent(value).map_err(error)?;
        Ok(Self {
            metric: metric.to_string(),
            op,
            value,
        })
    }

    /// Whether the metric's `observed` value satisfies the predicate.
    pub fn holds(&self, observed: f64) -> bool {
        self.op.holds(observed, self.value)
    }
}

impl fmt::Display for Predicate {
    /// Writes `metric op value`, such as `"engagement_rate < 0.05"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op, self.value)
    }
}

impl FromStr for Predicate {
    type Err = GrammarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn predicate(metric: &str, op: Comparison, value: f64) -> Predicate {
        Predicate {
            metric: metric.to_string(),
            op,
            value,
        }
    }

    #[test]
    fn seed_predicate() {
        let parsed = Predicate::parse("engagement_rate < 0.05").unwrap();
        assert_eq!(parsed, predicate("engagement_rate", Comparison::Lt, 0.05));
        assert_eq!(parsed.to_string(), "engagement_rate < 0.05");
        assert!(parsed.holds(0.01));
        assert!(!parsed.holds(0.05));
        assert!(!parsed.holds(0.2));
    }

    #[test]
    fn spellings() {
        let cases = [
            (
                "engagement_rate<0.05",
                predicate("engagement_rate", Comparison::Lt, 0.05),
            ),
            (
                "  engagement_rate   <=   5% ",
                predicate("engagement_rate", Comparison::Le, 0.05),
            ),
            (
                "followers >= 1000",
                predicate("followers", Comparison::Ge, 1000.0),
            ),
            (
                "post.views > 10",
                predicate("post.views", Comparison::Gt, 10.0),
            ),
            ("_private == 0", predicate("_private", Comparison::Eq, 0.0)),
            ("ctr_7d != -1.5", predicate("ctr_7d", Comparison::Ne, -1.5)),
            ("x < 12.5 %", predicate("x", Comparison::Lt, 0.125)),
        ];
        for (text, expected) in cases {
            assert_eq!(Predicate::parse(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn rejections_explain_themselves() {
        let detail = |text: &str| {
            let error = Predicate::parse(text).expect_err(text);
            assert_eq!(error.expected, "a predicate");
            assert_eq!(error.input, text);
            error.detail
        };
        assert!(detail("Engagement_rate < 0.05").contains("lowercase"));
        assert!(detail("engagement_Rate < 0.05").contains("lowercase"));
        assert!(detail("").contains("metric name"));
        assert!(detail("< 0.05").contains("metric name"));
        assert!(detail("7days < 1").contains("must start"));
        assert!(detail(".rate < 1").contains("must start"));
        assert!(detail("engagement_rate").contains("comparison"));
        assert!(detail("engagement_rate = 0.05").contains("comparison"));
        assert!(detail("engagement rate < 0.05").contains("comparison"));
        assert!(detail("engagement-rate < 0.05").contains("comparison"));
        assert!(detail("engagement_rate <").contains("missing"));
        assert!(detail("engagement_rate < high").contains("not a number"));
        assert!(detail("engagement_rate < nan").contains("not a number"));
        assert!(detail("engagement_rate < 1e400").contains("too large"));
        assert!(detail("engagement_rate < 0.05 and x > 1").contains("not a number"));
    }

    fn comparison() -> impl Strategy<Value = Comparison> {
        proptest::sample::select(vec![
            Comparison::Lt,
            Comparison::Le,
            Comparison::Gt,
            Comparison::Ge,
            Comparison::Eq,
            Comparison::Ne,
        ])
    }

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            (-10_000i64..10_000).prop_map(|n| n as f64 / 1000.0),
        ]
    }

    proptest! {
        #[test]
        fn display_round_trips(metric in "[a-z_][a-z0-9_.]{0,24}", op in comparison(), value in finite()) {
            let original = Predicate { metric, op, value };
            prop_assert_eq!(Predicate::parse(&original.to_string()), Ok(original));
        }

        #[test]
        fn spacing_does_not_matter(
            metric in "[a-z_][a-z0-9_.]{0,12}",
            op in comparison(),
            value in finite(),
            left in " {0,3}",
            right in " {0,3}",
        ) {
            let text = format!("{left}{metric}{left}{op}{right}{value}{right}");
            prop_assert_eq!(Predicate::parse(&text), Ok(Predicate { metric, op, value }));
        }

        #[test]
        fn holds_agrees_with_the_comparison(op in comparison(), value in finite(), observed in finite()) {
            let predicate = Predicate { metric: "m".into(), op, value };
            prop_assert_eq!(predicate.holds(observed), op.holds(observed, value));
        }

        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = Predicate::parse(&text);
        }

        #[test]
        fn never_panics_on_its_alphabet(text in "[a-zA-Z0-9_. <>=!%e\\-]{0,24}") {
            if let Ok(predicate) = Predicate::parse(&text) {
                prop_assert!(predicate.value.is_finite());
            }
        }
    }
}
