//! Durations (`"6 hours"`, `"90s"`, `"1.5 h"`) and cycle times (`"immediate"` or a duration).
//!
//! Grammar, ignoring case and surrounding whitespace:
//!
//! ```text
//! duration := amount space? unit
//! amount   := digits ("." digits)?
//! unit     := ms | msec | msecs | millisecond | milliseconds
//!           | s | sec | secs | second | seconds
//!           | m | min | mins | minute | minutes
//!           | h | hr | hrs | hour | hours
//!           | d | day | days
//!           | w | wk | wks | week | weeks
//! cycle    := "immediate" | "immediately" | duration
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::GrammarError;

const EXPECTED_DURATION: &str = "a duration";
const EXPECTED_CYCLE: &str = "a cycle time";
const NANOS_PER_SECOND: u128 = 1_000_000_000;
/// Fraction digits beyond this many change a duration by less than a nanosecond.
const MAX_FRACTION_DIGITS: usize = 18;

/// A unit of time: the names it is written with and its length.
struct Unit {
    names: &'static [&'static str],
    singular: &'static str,
    plural: &'static str,
    nanos: u128,
}

/// The units, largest first (the order [`format_duration`] tries them in).
const UNITS: [Unit; 6] = [
    Unit {
        names: &["w", "wk", "wks", "week", "weeks"],
        singular: "week",
        plural: "weeks",
        nanos: 7 * 24 * 3600 * NANOS_PER_SECOND,
    },
    Unit {
        names: &["d", "day", "days"],
        singular: "day",
        plural: "days",
        nanos: 24 * 3600 * NANOS_PER_SECOND,
    },
    Unit {
        names: &["h", "hr", "hrs", "hour", "hours"],
        singular: "hour",
        plural: "hours",
        nanos: 3600 * NANOS_PER_SECOND,
    },
    Unit {
        names: &["m", "min", "mins", "minute", "minutes"],
        singular: "minute",
        plural: "minutes",
        nanos: 60 * NANOS_PER_SECOND,
    },
    Unit {
        names: &["s", "sec", "secs", "second", "seconds"],
        singular: "second",
        plural: "seconds",
        nanos: NANOS_PER_SECOND,
    },
    Unit {
        names: &["ms", "msec", "msecs", "millisecond", "milliseconds"],
        singular: "millisecond",
        plural: "milliseconds",
        nanos: 1_000_000,
    },
];

/// Parses a duration such as `"6 hours"`, `"30 minutes"`, `"1 day"`, `"500ms"` or `"1.5 h"`.
///
/// Units may be singular, plural or abbreviated (`ms`, `s`, `sec`, `secs`, `m`, `min`, `mins`,
/// `h`, `hr`, `hrs`, `d`, `w`), with or without a space before them; case and surrounding
/// whitespace are ignored. The amount is a non-negative integer or decimal (`"0 seconds"` is
/// allowed); anything below a nanosecond is dropped. Negative amounts, missing or unknown
/// units, trailing text and amounts too large for a [`Duration`] are rejected.
pub fn parse_duration(s: &str) -> Result<Duration, GrammarError> {
    let error = |detail: String| GrammarError::new(s, EXPECTED_DURATION, detail);
    let text = s.trim();
    if text.is_empty() {
        return Err(error(
            "it is empty; write an amount and a unit, such as \"6 hours\"".into(),
        ));
    }
    if text.starts_with('-') {
        return Err(error("durations cannot be negative".into()));
    }
    let amount_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (amount, rest) = text.split_at(amount_end);
    if amount.is_empty() {
        return Err(error(
            "it does not start with an amount; write an amount and a unit, such as \"6 hours\""
                .into(),
        ));
    }
    let rest = rest.trim_start();
    let word_end = rest
        .find(|c: char| !c.is_alphabetic())
        .unwrap_or(rest.len());
    let (word, trailing) = rest.split_at(word_end);
    if word.is_empty() {
        return Err(error(format!(
            "a unit is missing after {amount:?} (one of ms, s, m, h, d, w)"
        )));
    }
    if !trailing.is_empty() {
        return Err(error(format!("unexpected {trailing:?} after the unit")));
    }
    let lowercase = word.to_lowercase();
    let unit = UNITS
        .iter()
        .find(|unit| unit.names.contains(&lowercase.as_str()))
        .ok_or_else(|| {
            error(format!(
                "unknown unit {word:?} (use milliseconds, seconds, minutes, hours, days or weeks)"
            ))
        })?;
    let nanos = amount_in_nanos(amount, unit.nanos).map_err(error)?;
    let seconds = u64::try_from(nanos / NANOS_PER_SECOND)
        .map_err(|_| error(format!("{amount} {} is too long", unit.plural)))?;
    // The remainder is below one billion, so it fits.
    Ok(Duration::new(seconds, (nanos % NANOS_PER_SECOND) as u32))
}

/// Converts a decimal `amount` (digits and dots only) of a unit `unit_nanos` long to nanoseconds.
fn amount_in_nanos(amount: &str, unit_nanos: u128) -> Result<u128, String> {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let malformed =
        whole.is_empty() || fraction.contains('.') || (amount.contains('.') && fraction.is_empty());
    if malformed {
        return Err(format!("{amount:?} is not a valid amount"));
    }
    let too_large = || format!("the amount {amount} is too large");
    // `whole` holds digits only, so parsing can only fail by overflowing.
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let whole_nanos = whole.checked_mul(unit_nanos).ok_or_else(too_large)?;
    let fraction = fraction.get(..MAX_FRACTION_DIGITS).unwrap_or(fraction);
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| too_large())?;
        let scale = 10u128.pow(fraction.len() as u32);
        // digits < 10^18 and unit_nanos < 10^15, so this cannot overflow.
        digits * unit_nanos / scale
    };
    whole_nanos
        .checked_add(fraction_nanos)
        .ok_or_else(too_large)
}

/// Writes a duration in its canonical form: a whole number of the largest unit that divides it
/// exactly, such as `"6 hours"`, `"1 day"`, `"2 weeks"`, `"90 seconds"`, `"1500 milliseconds"`.
///
/// Zero is `"0 seconds"`; a duration that is not a whole number of milliseconds is written in
/// decimal seconds (`"0.000001 seconds"`). [`parse_duration`] reads every result back exactly.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0 seconds".to_string();
    }
    for unit in &UNITS {
        if nanos.is_multiple_of(unit.nanos) {
            let amount = nanos / unit.nanos;
            let name = if amount == 1 {
                unit.singular
            } else {
                unit.plural
            };
            return format!("{amount} {name}");
        }
    }
    let fraction = format!("{:09}", d.subsec_nanos());
    format!("{}.{} seconds", d.as_secs(), fraction.trim_end_matches('0'))
}

/// How often something runs: right away, or once every so often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleTime {
    /// Run as soon as possible (`"immediate"`).
    Immediate,
    /// Run once every given duration (`"4 hours"`).
    Every(Duration),
}

impl CycleTime {
    /// Parses `"immediate"` (or `"immediately"`), in any case, or a duration as
    /// [`parse_duration`] reads it.
    pub fn parse(s: &str) -> Result<Self, GrammarError> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("immediate") || text.eq_ignore_ascii_case("immediately") {
            return Ok(Self::Immediate);
        }
        parse_duration(s).map(Self::Every).map_err(|error| {
            GrammarError::new(
                s,
                EXPECTED_CYCLE,
                format!("expected \"immediate\" or a duration, but {}", error.detail),
            )
        })
    }
}

impl fmt::Display for CycleTime {
    /// Writes `"immediate"` or the duration as [`format_duration`] does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Immediate => f.write_str("immediate"),
            Self::Every(duration) => f.write_str(&format_duration(*duration)),
        }
    }
}

impl FromStr for CycleTime {
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

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn seed_durations() {
        assert_eq!(parse_duration("6 hours"), Ok(secs(6 * HOUR)));
        assert_eq!(parse_duration("24 hours"), Ok(secs(24 * HOUR)));
        assert_eq!(parse_duration("4 hours"), Ok(secs(4 * HOUR)));
    }

    #[test]
    fn units_and_spellings() {
        let cases = [
            ("30 minutes", secs(30 * 60)),
            ("90 seconds", secs(90)),
            ("1 day", secs(24 * HOUR)),
            ("2 weeks", secs(14 * 24 * HOUR)),
            ("500 milliseconds", Duration::from_millis(500)),
            ("1 hour", secs(HOUR)),
            ("1 second", secs(1)),
            ("6h", secs(6 * HOUR)),
            ("6 h", secs(6 * HOUR)),
            ("6 Hours", secs(6 * HOUR)),
            ("  6 HOURS \n", secs(6 * HOUR)),
            ("6hrs", secs(6 * HOUR)),
            ("6 hr", secs(6 * HOUR)),
            ("250ms", Duration::from_millis(250)),
            ("5 s", secs(5)),
            ("5 sec", secs(5)),
            ("5 secs", secs(5)),
            ("5m", secs(300)),
            ("5 min", secs(300)),
            ("5 mins", secs(300)),
            ("3d", secs(3 * 24 * HOUR)),
            ("1w", secs(7 * 24 * HOUR)),
            ("0 seconds", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("007 h", secs(7 * HOUR)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn decimal_amounts() {
        assert_eq!(parse_duration("1.5 hours"), Ok(secs(5400)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.25 days"), Ok(secs(54 * HOUR)));
        assert_eq!(parse_duration("1.0000000001 s"), Ok(secs(1)));
        assert_eq!(
            parse_duration("0.000000001 seconds"),
            Ok(Duration::from_nanos(1))
        );
    }

    #[test]
    fn rejections_explain_themselves() {
        let detail = |text: &str| match parse_duration(text) {
            Ok(value) => panic!("{text:?} parsed as {value:?}"),
            Err(error) => {
                assert_eq!(error.input, text);
                assert_eq!(error.expected, "a duration");
                error.detail
            }
        };
        assert!(detail("").contains("empty"));
        assert!(detail("   ").contains("empty"));
        assert!(detail("-5 minutes").contains("negative"));
        assert!(detail("6 parsecs").contains("unknown unit"));
        assert!(detail("6").contains("unit is missing"));
        assert!(detail("6 hours please").contains("unexpected"));
        assert!(detail("6 hours 30 minutes").contains("unexpected"));
        assert!(detail("hours").contains("amount"));
        assert!(detail("1.2.3 h").contains("not a valid amount"));
        assert!(detail("1. h").contains("not a valid amount"));
        assert!(detail(".5 h").contains("amount"));
        assert!(detail("99999999999999999999999999 weeks").contains("too"));
        assert!(detail("1000000000000000000000000000000000000000000 ms").contains("too large"));
        assert!(detail("18446744073709551616 seconds").contains("too long"));
    }

    #[test]
    fn canonical_formatting() {
        let cases = [
            (secs(6 * HOUR), "6 hours"),
            (secs(24 * HOUR), "1 day"),
            (secs(90), "90 seconds"),
            (Duration::from_millis(1500), "1500 milliseconds"),
            (secs(14 * 24 * HOUR), "2 weeks"),
            (secs(60), "1 minute"),
            (Duration::ZERO, "0 seconds"),
            (Duration::from_nanos(1_500), "0.0000015 seconds"),
            (Duration::new(2, 1), "2.000000001 seconds"),
        ];
        for (duration, expected) in cases {
            assert_eq!(format_duration(duration), expected);
        }
    }

    #[test]
    fn extreme_durations_round_trip() {
        for duration in [Duration::MAX, Duration::from_secs(u64::MAX), Duration::ZERO] {
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }

    #[test]
    fn seed_cycle_times() {
        assert_eq!(CycleTime::parse("immediate"), Ok(CycleTime::Immediate));
        assert_eq!(CycleTime::parse("Immediately"), Ok(CycleTime::Immediate));
        assert_eq!(
            CycleTime::parse("4 hours"),
            Ok(CycleTime::Every(secs(4 * HOUR)))
        );
        assert_eq!(CycleTime::Immediate.to_string(), "immediate");
        assert_eq!(CycleTime::Every(secs(4 * HOUR)).to_string(), "4 hours");
        let error = CycleTime::parse("soon").unwrap_err();
        assert_eq!(error.expected, "a cycle time");
        assert!(error.detail.contains("immediate"));
    }

    fn unit_name() -> impl Strategy<Value = (&'static str, u128)> {
        let names: Vec<(&'static str, u128)> = UNITS
            .iter()
            .flat_map(|unit| unit.names.iter().map(move |name| (*name, unit.nanos)))
            .collect();
        proptest::sample::select(names)
    }

    fn cycle_time() -> impl Strategy<Value = CycleTime> {
        prop_oneof![
            Just(CycleTime::Immediate),
            any::<u64>().prop_map(|ms| CycleTime::Every(Duration::from_millis(ms))),
        ]
    }

    proptest! {
        #[test]
        fn whole_milliseconds_round_trip(millis in any::<u64>()) {
            let duration = Duration::from_millis(millis);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn any_duration_round_trips(seconds in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let duration = Duration::new(seconds, nanos);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn amount_and_unit_in_any_spacing_and_case(
            amount in 0u32..1_000_000,
            (name, nanos) in unit_name(),
            space in "[ \t]{0,2}",
            upper in any::<bool>(),
        ) {
            let name = if upper { name.to_uppercase() } else { name.to_string() };
            let text = format!(" {amount}{space}{name} ");
            let total = u128::from(amount) * nanos;
            let expected = Duration::new(
                (total / NANOS_PER_SECOND) as u64,
                (total % NANOS_PER_SECOND) as u32,
            );
            prop_assert_eq!(parse_duration(&text), Ok(expected));
        }

        #[test]
        fn cycle_time_round_trips(cycle in cycle_time()) {
            prop_assert_eq!(CycleTime::parse(&cycle.to_string()), Ok(cycle));
        }

        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = parse_duration(&text);
            let _ = CycleTime::parse(&text);
        }

        #[test]
        fn never_panics_on_its_alphabet(text in "[0-9. \\-a-zA-Z]{0,24}") {
            let _ = parse_duration(&text);
            let _ = CycleTime::parse(&text);
        }

        #[test]
        fn never_panics_on_long_amounts(digits in "[0-9]{1,60}(\\.[0-9]{1,60})?", (name, _) in unit_name()) {
            let _ = parse_duration(&format!("{digits} {name}"));
        }
    }
}
