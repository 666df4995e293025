//! Targets (`10`, `0.85`, `"< 2 hours"`, `">= 10"`) and improvements (`"5% weekly"`).
//!
//! Grammar, with whitespace between the parts and around the whole ignored:
//!
//! ```text
//! target      := comparison? quantity          no comparison means ">="
//! comparison  := "<" | "<=" | ">" | ">=" | "==" | "!="
//! quantity    := number | number "%" | duration
//! improvement := number "%" period
//! period      := daily | weekly | monthly | quarterly | yearly | annually
//!              | ("per" | "a" | "each" | "every" | "/") (day | week | month | quarter | year)
//! ```
//!
//! Numbers are plain decimals (`10`, `-0.5`, `1e3`) and must be finite; `85%` is `0.85`.
//! Durations are written as [`parse_duration`] reads them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{GrammarError, format_duration, parse_duration, parse_number, parse_number_or_percent};

const EXPECTED_TARGET: &str = "a target";
const EXPECTED_IMPROVEMENT: &str = "an improvement";
const EXPECTED_COMPARISON: &str = "a comparison";
const EXPECTED_QUANTITY: &str = "a quantity";
const EXPECTED_PERIOD: &str = "a period";
const SECONDS_PER_DAY: u64 = 24 * 3600;

/// A comparison between an observed value (left) and a reference value (right).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparison {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// Every comparison with its symbol, two-character symbols first so they win over their prefixes.
const COMPARISONS: [(&str, Comparison); 6] = [
    ("<=", Comparison::Le),
    (">=", Comparison::Ge),
    ("==", Comparison::Eq),
    ("!=", Comparison::Ne),
    ("<", Comparison::Lt),
    (">", Comparison::Gt),
];

impl Comparison {
    /// Whether `left <op> right` holds. Any comparison with NaN is false, except `!=`.
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Self::Lt => left < right,
            Self::Le => left <= right,
            Self::Gt => left > right,
            Self::Ge => left >= right,
            Self::Eq => left == right,
            Self::Ne => left != right,
        }
    }

    /// The symbol, such as `"<="`.
    pub fn symbol(self) -> &'static str {
        COMPARISONS
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("", |(symbol, _)| symbol)
    }
}

/// Splits a leading comparison symbol off `text` (which should not start with whitespace).
pub(crate) fn split_comparison(text: &str) -> Option<(Comparison, &str)> {
    COMPARISONS
        .iter()
        .find_map(|(symbol, op)| text.strip_prefix(symbol).map(|rest| (*op, rest)))
}

impl fmt::Display for Comparison {
    /// Writes `<`, `<=`, `>`, `>=`, `==` or `!=`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

impl FromStr for Comparison {
    type Err = GrammarError;

    /// Parses one of `<`, `<=`, `>`, `>=`, `==`, `!=`, ignoring surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match split_comparison(s.trim()) {
            Some((op, "")) => Ok(op),
            _ => Err(GrammarError::new(
                s,
                EXPECTED_COMPARISON,
                "write one of <, <=, >, >=, ==, !=",
            )),
        }
    }
}

/// The value a target compares against: a plain number or a duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantity {
    /// A plain number, such as a count (`10`) or a ratio (`0.85`).
    Number(f64),
    /// A length of time, such as `2 hours`.
    Duration(Duration),
}

impl Quantity {
    /// The value as a number: the number itself, or the duration in seconds.
    pub fn as_f64(&self) -> f64 {
        match self {
            Self::Number(value) => *value,
            Self::Duration(duration) => duration.as_secs_f64(),
        }
    }
}

/// Parses a number, a percentage or a duration. The error is a detail.
fn parse_quantity(text: &str) -> Result<Quantity, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a value is missing; write a number (10, 0.85) or a duration (2 hours)".into());
    }
    if let Ok(number) = parse_number_or_percent(text) {
        return Ok(Quantity::Number(number));
    }
    // Text with letters was meant as a duration; explain that parser's complaint.
    if text.chars().any(char::is_alphabetic) {
        parse_duration(text)
            .map(Quantity::Duration)
            .map_err(|error| error.detail)
    } else {
        parse_number_or_percent(text).map(Quantity::Number)
    }
}

impl fmt::Display for Quantity {
    /// Writes the number (`0.85`) or the duration as [`format_duration`] does (`2 hours`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(value) => write!(f, "{value}"),
            Self::Duration(duration) => f.write_str(&format_duration(*duration)),
        }
    }
}

impl FromStr for Quantity {
    type Err = GrammarError;

    /// Parses a finite number (`10`, `0.85`, `85%`) or a duration (`2 hours`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_quantity(s).map_err(|detail| GrammarError::new(s, EXPECTED_QUANTITY, detail))
    }
}

/// A goal for an observed value: the comparison it must satisfy against a quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// How the observed value is compared with `value`.
    pub op: Comparison,
    /// The value compared against.
    pub value: Quantity,
}

impl Target {
    /// A plain number target (YAML `target: 10` or `target: 0.85`), meaning "at least `n`".
    /// NaN and infinities are rejected.
    pub fn from_number(n: f64) -> Result<Self, GrammarError> {
        if n.is_finite() {
            Ok(Self {
                op: Comparison::Ge,
                value: Quantity::Number(n),
            })
        } else {
            Err(GrammarError::new(
                &n.to_string(),
                EXPECTED_TARGET,
                "a target must be a finite number",
            ))
        }
    }

    /// Parses a target such as `"< 2 hours"`, `"<= 0.5"`, `">= 10"`, `"< 2h"`, or a bare
    /// `"10"` / `"0.85"` meaning `>=`. Spaces around the comparison are optional.
    pub fn parse(s: &str) -> Result<Self, GrammarError> {
        let text = s.trim();
        let (op, rest) = split_comparison(text).unwrap_or((Comparison::Ge, text));
        let value =
            parse_quantity(rest).map_err(|detail| GrammarError::new(s, EXPECTED_TARGET, detail))?;
        Ok(Self { op, value })
    }

    /// Whether `observed`, in the quantity's unit (seconds for durations), meets the target.
    pub fn is_met(&self, observed: f64) -> bool {
        self.op.holds(observed, self.value.as_f64())
    }
}

impl fmt::Display for Target {
    /// Writes the comparison and the quantity, such as `">= 10"` or `"< 2 hours"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.value)
    }
}

impl FromStr for Target {
    type Err = GrammarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The period an improvement is measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One day.
    Daily,
    /// Seven days.
    Weekly,
    /// Thirty days.
    Monthly,
    /// Ninety-one days.
    Quarterly,
    /// Three hundred sixty-five days.
    Yearly,
}

/// Every period with its adjective and noun.
const PERIODS: [(Period, &str, &str); 5] = [
    (Period::Daily, "daily", "day"),
    (Period::Weekly, "weekly", "week"),
    (Period::Monthly, "monthly", "month"),
    (Period::Quarterly, "quarterly", "quarter"),
    (Period::Yearly, "yearly", "year"),
];

impl Period {
    /// The period's length: a day, 7 days, 30 days (a month), 91 days (a quarter) or 365 days.
    pub fn duration(self) -> Duration {
        let days = match self {
            Self::Daily => 1,
            Self::Weekly => 7,
            Self::Monthly => 30,
            Self::Quarterly => 91,
            Self::Yearly => 365,
        };
        Duration::from_secs(days * SECONDS_PER_DAY)
    }

    /// The adjective, such as `"weekly"`.
    fn adjective(self) -> &'static str {
        PERIODS
            .iter()
            .find(|(period, _, _)| *period == self)
            .map_or("", |(_, adjective, _)| adjective)
    }
}

/// Parses `weekly`, `per week`, `a week`, `each week`, `every week` or `/ week` (any case, and
/// likewise for the other periods, plus `annually`). The error is a detail.
fn parse_period(text: &str) -> Result<Period, String> {
    let lower = text.trim().to_lowercase();
    let words: Vec<&str> = match lower.strip_prefix('/') {
        Some(noun) => vec!["/", noun.trim()],
        None => lower.split_whitespace().collect(),
    };
    let found = match words.as_slice() {
        ["annually"] => Some(Period::Yearly),
        [adjective] => PERIODS
            .iter()
            .find(|(_, name, _)| name == adjective)
            .map(|(period, _, _)| *period),
        ["per" | "a" | "each" | "every" | "/", noun] => PERIODS
            .iter()
            .find(|(_, _, name)| name == noun)
            .map(|(period, _, _)| *period),
        _ => None,
    };
    found.ok_or_else(|| {
        if lower.is_empty() {
            "a period is missing; write daily, weekly, monthly, quarterly or yearly".to_string()
        } else {
            format!(
                "{:?} is not a period; write daily, weekly, monthly, quarterly or yearly \
                 (or \"per week\")",
                text.trim()
            )
        }
    })
}

impl fmt::Display for Period {
    /// Writes `daily`, `weekly`, `monthly`, `quarterly` or `yearly`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.adjective())
    }
}

impl FromStr for Period {
    type Err = GrammarError;

    /// Parses `weekly`, `per week` and the like.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_period(s).map_err(|detail| GrammarError::new(s, EXPECTED_PERIOD, detail))
    }
}

/// A goal of relative growth: `percent` per `period`, such as 5% weekly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Improvement {
    /// The growth in percent per period (`5.0` for 5%); finite and above -100.
    pub percent: f64,
    /// The period the growth is measured over.
    pub period: Period,
}

impl Improvement {
    /// Parses `"5% weekly"`, `"3% monthly"`, `"10 % per week"`, `"2% daily"`. The percentage may
    /// be a decimal or negative, but must be finite and above -100.
    pub fn parse(s: &str) -> Result<Self, GrammarError> {
        let error = |detail: String| GrammarError::new(s, EXPECTED_IMPROVEMENT, detail);
        let Some((number, period)) = s.split_once('%') else {
            return Err(error(
                "the percentage is missing; write it as \"5% weekly\"".into(),
            ));
        };
        let percent = parse_number(number).map_err(error)?;
        if percent <= -100.0 {
            return Err(error(format!(
                "{percent}% would shrink to nothing or less; it must be above -100%"
            )));
        }
        let period = parse_period(period).map_err(error)?;
        Ok(Self { percent, period })
    }
}

impl fmt::Display for Improvement {
    /// Writes the percentage and the period, such as `"5% weekly"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}% {}", self.percent, self.period)
    }
}

impl FromStr for Improvement {
    type Err = GrammarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: u64 = 3600;

    fn target(op: Comparison, value: Quantity) -> Target {
        Target { op, value }
    }

    #[test]
    fn seed_targets() {
        let ten = Target::from_number(10.0).unwrap();
        assert_eq!(ten, target(Comparison::Ge, Quantity::Number(10.0)));
        assert_eq!(ten.to_string(), ">= 10");
        assert!(ten.is_met(10.0) && ten.is_met(12.0) && !ten.is_met(9.0));

        let ratio = Target::from_number(0.85).unwrap();
        assert_eq!(ratio.to_string(), ">= 0.85");
        assert!(ratio.is_met(0.9) && !ratio.is_met(0.8));

        let fast = Target::parse("< 2 hours").unwrap();
        assert_eq!(
            fast,
            target(
                Comparison::Lt,
                Quantity::Duration(Duration::from_secs(2 * HOUR))
            )
        );
        assert_eq!(fast.to_string(), "< 2 hours");
        assert!(fast.is_met(3600.0) && !fast.is_met(7200.0));
    }

    #[test]
    fn target_spellings() {
        let cases = [
            ("<= 0.5", target(Comparison::Le, Quantity::Number(0.5))),
            (">= 10", target(Comparison::Ge, Quantity::Number(10.0))),
            ("10", target(Comparison::Ge, Quantity::Number(10.0))),
            (" 0.85 ", target(Comparison::Ge, Quantity::Number(0.85))),
            ("85%", target(Comparison::Ge, Quantity::Number(0.85))),
            (
                "< 2h",
                target(
                    Comparison::Lt,
                    Quantity::Duration(Duration::from_secs(2 * HOUR)),
                ),
            ),
            (
                "<2h",
                target(
                    Comparison::Lt,
                    Quantity::Duration(Duration::from_secs(2 * HOUR)),
                ),
            ),
            ("> -3", target(Comparison::Gt, Quantity::Number(-3.0))),
            ("== 0", target(Comparison::Eq, Quantity::Number(0.0))),
            ("!= 1", target(Comparison::Ne, Quantity::Number(1.0))),
            (
                "30 minutes",
                target(
                    Comparison::Ge,
                    Quantity::Duration(Duration::from_secs(1800)),
                ),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Target::parse(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn target_rejections() {
        for text in [
            "",
            "<",
            "< ",
            "=< 5",
            "= 5",
            "<< 5",
            "< 2 parsecs",
            "< -2 hours",
            "nan",
            "inf",
            "1e999",
            "10 apples",
            "> 5 5",
        ] {
            let error = Target::parse(text).expect_err(text);
            assert_eq!(error.expected, "a target", "{text:?}");
        }
        assert!(
            Target::parse("< 2 parsecs")
                .unwrap_err()
                .detail
                .contains("unknown unit")
        );
        for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(Target::from_number(n).is_err());
        }
    }

    #[test]
    fn comparisons() {
        use Comparison::*;
        let cases = [
            (Lt, "<"),
            (Le, "<="),
            (Gt, ">"),
            (Ge, ">="),
            (Eq, "=="),
            (Ne, "!="),
        ];
        for (op, symbol) in cases {
            assert_eq!(op.to_string(), symbol);
            assert_eq!(symbol.parse::<Comparison>(), Ok(op));
        }
        assert!(Lt.holds(1.0, 2.0) && !Lt.holds(2.0, 2.0));
        assert!(Le.holds(2.0, 2.0) && !Le.holds(3.0, 2.0));
        assert!(Gt.holds(3.0, 2.0) && !Gt.holds(2.0, 2.0));
        assert!(Ge.holds(2.0, 2.0) && !Ge.holds(1.0, 2.0));
        assert!(Eq.holds(2.0, 2.0) && !Eq.holds(1.0, 2.0));
        assert!(Ne.holds(1.0, 2.0) && !Ne.holds(2.0, 2.0));
        assert!(!Ge.holds(f64::NAN, 0.0) && Ne.holds(f64::NAN, 0.0));
        assert!("=".parse::<Comparison>().is_err());
        assert!("<>".parse::<Comparison>().is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(Quantity::Number(0.5).as_f64(), 0.5);
        assert_eq!(
            Quantity::Duration(Duration::from_millis(1500)).as_f64(),
            1.5
        );
        assert_eq!(
            "2 hours".parse::<Quantity>(),
            Ok(Quantity::Duration(Duration::from_secs(7200)))
        );
        assert_eq!("2".parse::<Quantity>(), Ok(Quantity::Number(2.0)));
        assert!("two".parse::<Quantity>().is_err());
    }

    #[test]
    fn seed_improvements() {
        assert_eq!(
            Improvement::parse("5% weekly"),
            Ok(Improvement {
                percent: 5.0,
                period: Period::Weekly
            })
        );
        assert_eq!(
            Improvement::parse("3% monthly"),
            Ok(Improvement {
                percent: 3.0,
                period: Period::Monthly
            })
        );
        assert_eq!(
            Improvement::parse("5% weekly").unwrap().to_string(),
            "5% weekly"
        );
    }

    #[test]
    fn improvement_spellings() {
        let cases = [
            ("10 % per week", 10.0, Period::Weekly),
            ("2% daily", 2.0, Period::Daily),
            ("1.5% Quarterly", 1.5, Period::Quarterly),
            ("-2% yearly", -2.0, Period::Yearly),
            ("7% annually", 7.0, Period::Yearly),
            ("0% a day", 0.0, Period::Daily),
            ("4%/month", 4.0, Period::Monthly),
            ("4% / month", 4.0, Period::Monthly),
            ("  4%   EVERY   month ", 4.0, Period::Monthly),
        ];
        for (text, percent, period) in cases {
            assert_eq!(
                Improvement::parse(text),
                Ok(Improvement { percent, period }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn improvement_rejections() {
        for text in [
            "",
            "5",
            "5 weekly",
            "% weekly",
            "5%",
            "5% fortnightly",
            "-100% weekly",
            "-150% daily",
            "inf% weekly",
            "5%% weekly",
            "5% per",
            "5% weekly please",
        ] {
            let error = Improvement::parse(text).expect_err(text);
            assert_eq!(error.expected, "an improvement", "{text:?}");
        }
        assert!(
            Improvement::parse("-100% weekly")
                .unwrap_err()
                .detail
                .contains("-100")
        );
    }

    #[test]
    fn periods() {
        let days = [
            (Period::Daily, 1),
            (Period::Weekly, 7),
            (Period::Monthly, 30),
            (Period::Quarterly, 91),
            (Period::Yearly, 365),
        ];
        for (period, n) in days {
            assert_eq!(period.duration(), Duration::from_secs(n * 24 * HOUR));
            assert_eq!(period.to_string().parse::<Period>(), Ok(period));
        }
        assert_eq!("per quarter".parse::<Period>(), Ok(Period::Quarterly));
        assert!("weekly-ish".parse::<Period>().is_err());
    }

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 100.0),
        ]
    }

    fn comparison() -> impl Strategy<Value = Comparison> {
        proptest::sample::select(COMPARISONS.map(|(_, op)| op).to_vec())
    }

    fn quantity() -> impl Strategy<Value = Quantity> {
        prop_oneof![
            finite().prop_map(Quantity::Number),
            any::<u64>().prop_map(|ms| Quantity::Duration(Duration::from_millis(ms))),
            (any::<u64>(), 0u32..1_000_000_000)
                .prop_map(|(s, n)| Quantity::Duration(Duration::new(s, n))),
        ]
    }

    fn period() -> impl Strategy<Value = Period> {
        proptest::sample::select(PERIODS.map(|(period, _, _)| period).to_vec())
    }

    proptest! {
        #[test]
        fn target_round_trips(op in comparison(), value in quantity()) {
            let original = Target { op, value };
            prop_assert_eq!(Target::parse(&original.to_string()), Ok(original));
            prop_assert_eq!(value.to_string().parse::<Quantity>(), Ok(value));
        }

        #[test]
        fn number_targets_mean_at_least(n in finite(), observed in finite()) {
            let target = Target::from_number(n).unwrap();
            prop_assert_eq!(Target::parse(&n.to_string()), Ok(target));
            prop_assert_eq!(target.is_met(observed), observed >= n);
        }

        #[test]
        fn improvement_round_trips(percent in finite().prop_filter("above -100", |p| *p > -100.0), period in period()) {
            let original = Improvement { percent, period };
            prop_assert_eq!(Improvement::parse(&original.to_string()), Ok(original));
        }

        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = Target::parse(&text);
            let _ = Improvement::parse(&text);
            let _ = text.parse::<Comparison>();
            let _ = text.parse::<Period>();
        }

        #[test]
        fn never_panics_on_its_alphabet(text in "[<>=!0-9.%e\\- a-z/]{0,20}") {
            if let Ok(target) = Target::parse(&text) {
                prop_assert!(target.value.as_f64().is_finite());
            }
            if let Ok(improvement) = Improvement::parse(&text) {
                prop_assert!(improvement.percent.is_finite() && improvement.percent > -100.0);
            }
        }
    }
}
