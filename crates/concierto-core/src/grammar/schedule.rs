//! Schedules (`"09:00"`, `"Monday 10:00"`, `"0 9 * * MON-FRI"`) and time zones (`"Europe/Madrid"`).
//!
//! Grammar, with surrounding whitespace ignored:
//!
//! ```text
//! schedule := time                 daily, such as "09:00" or "9:00"
//!           | weekday time         weekly, such as "Monday 10:00" or "mon 10:00"
//!           | cron                 5 fields, or 6 with seconds first, checked by croner
//! time     := hour ":" minute (":" second)?       24-hour clock, two-digit minutes and seconds
//! weekday  := monday | mon | tuesday | tue | … | sunday | sun     (any case)
//! ```
//!
//! A schedule is evaluated as a cron expression ([`Schedule::cron_expr`]) in the time zone of
//! the instant it is asked about, so fire times follow that zone's daylight saving rules.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveTime, TimeZone, Timelike, Weekday};
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, JobType};

use super::GrammarError;

const EXPECTED_SCHEDULE: &str = "a schedule";
const EXPECTED_TIMEZONE: &str = "a time zone";

/// Characters a cron expression may use (after the whitespace between fields).
fn is_cron_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/' | '?' | '#' | '+')
}

/// Weekdays with their full English names and cron abbreviations, Monday first.
const WEEKDAYS: [(Weekday, &str, &str); 7] = [
    (Weekday::Mon, "Monday", "MON"),
    (Weekday::Tue, "Tuesday", "TUE"),
    (Weekday::Wed, "Wednesday", "WED"),
    (Weekday::Thu, "Thursday", "THU"),
    (Weekday::Fri, "Friday", "FRI"),
    (Weekday::Sat, "Saturday", "SAT"),
    (Weekday::Sun, "Sunday", "SUN"),
];

/// Parses an IANA time zone name such as `"Europe/Madrid"`, or `"UTC"`.
///
/// The exact spelling is preferred; otherwise the name is matched ignoring ASCII case
/// (`"europe/madrid"`). Surrounding whitespace is ignored.
pub fn parse_timezone(s: &str) -> Result<chrono_tz::Tz, GrammarError> {
    let name = s.trim();
    if name.is_empty() {
        return Err(GrammarError::new(
            s,
            EXPECTED_TIMEZONE,
            "it is empty; write an IANA name such as \"Europe/Madrid\" or \"UTC\"",
        ));
    }
    name.parse::<chrono_tz::Tz>()
        .ok()
        .or_else(|| {
            chrono_tz::TZ_VARIANTS
                .iter()
                .copied()
                .find(|tz| tz.name().eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| {
            GrammarError::new(
                s,
                EXPECTED_TIMEZONE,
                "unknown IANA time zone name (such as \"Europe/Madrid\" or \"UTC\")",
            )
        })
}

/// When something runs: every day at a time, every week on a day at a time, or by cron.
///
/// Two schedules are equal when their canonical cron expressions ([`Schedule::cron_expr`])
/// are, so `Daily 09:00` equals the cron schedule `"0 9 * * *"`.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every day at `time` (local time of the zone it is evaluated in).
    Daily {
        /// The time of day; seconds are kept, fractions of a second are ignored.
        time: NaiveTime,
    },
    /// Every week on `day` at `time`.
    Weekly {
        /// The day of the week.
        day: Weekday,
        /// The time of day; seconds are kept, fractions of a second are ignored.
        time: NaiveTime,
    },
    /// A cron expression of 5 fields, or 6 with seconds first.
    Cron {
        /// The expression, as written (the parser stores it with single spaces, upper case).
        expr: String,
    },
}

impl Schedule {
    /// Parses `"09:00"` (daily, `HH:MM` on a 24-hour clock, also `"9:00"` and `"09:00:30"`),
    /// `"Monday 10:00"` / `"mon 10:00"` (weekly, any case, full or 3-letter day name), or a 5- or
    /// 6-field cron expression (`"0 9 * * MON-FRI"`, `"*/15 * * * *"`, `"0 0 9 * * *"` with
    /// seconds) validated with croner.
    pub fn parse(s: &str) -> Result<Self, GrammarError> {
        let error = |detail: String| GrammarError::new(s, EXPECTED_SCHEDULE, detail);
        let fields: Vec<&str> = s.split_whitespace().collect();
        match fields.as_slice() {
            [] => Err(error(
                "it is empty; write \"HH:MM\", \"<weekday> HH:MM\" or a cron expression".into(),
            )),
            [time] => parse_time(time)
                .map(|time| Self::Daily { time })
                .map_err(error),
            [day, time] => {
                let day = parse_weekday(day).map_err(&error)?;
                let time = parse_time(time).map_err(&error)?;
                Ok(Self::Weekly { day, time })
            }
            [_, _, _, _, _] | [_, _, _, _, _, _] => {
                let expr = fields.join(" ").to_ascii_uppercase();
                let cron = compile_cron(&expr).map_err(&error)?;
                if !fires_ever(&cron) {
                    return Err(error(
                        "it never fires (no date matches its day and month fields)".into(),
                    ));
                }
                Ok(Self::Cron { expr })
            }
            _ => Err(error(format!(
                "it has {} fields; write \"HH:MM\", \"<weekday> HH:MM\" or a cron expression of 5 \
                 fields (6 with seconds)",
                fields.len()
            ))),
        }
    }

    /// The cron expression this schedule is evaluated with: daily `"09:00"` gives
    /// `"0 9 * * *"`, weekly `"Monday 10:00"` gives `"0 10 * * MON"` (a time with seconds gives
    /// a 6-field expression), and a cron schedule gives its expression with single spaces in
    /// upper case.
    pub fn cron_expr(&self) -> String {
        match self {
            Self::Daily { time } => format!("{} * * *", cron_time(time)),
            Self::Weekly { day, time } => format!("{} * * {}", cron_time(time), weekday_abbr(*day)),
            Self::Cron { expr } => expr
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_ascii_uppercase(),
        }
    }

    /// The first fire time strictly after `after`, in the same zone.
    ///
    /// Daylight saving is handled as croner does: a time that falls in a spring-forward gap
    /// fires at the next valid instant that day, and a fixed time repeated by a fall-back fires
    /// once, at its first occurrence (interval expressions such as `"*/15 * * * *"` fire in
    /// both repetitions). Returns `None` when the expression never fires again (or, for a
    /// [`Schedule::Cron`] built by hand, is invalid).
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let cron = compile_cron(&self.cron_expr()).ok()?;
        next_fire(&cron, after)
    }

    /// All fire times in `(from, to]`, in order, at most `limit` of them.
    pub fn fires_between<Tz: TimeZone>(
        &self,
        from: &DateTime<Tz>,
        to: &DateTime<Tz>,
        limit: usize,
    ) -> Vec<DateTime<Tz>> {
        let mut fires = Vec::new();
        let Ok(cron) = compile_cron(&self.cron_expr()) else {
            return fires;
        };
        let mut cursor = from.clone();
        while fires.len() < limit {
            match next_fire(&cron, &cursor) {
                Some(next) if next <= *to => {
                    cursor = next.clone();
                    fires.push(next);
                }
                _ => break,
            }
        }
        fires
    }
}

/// The first fire time of `cron` strictly after `after`, skipping the second occurrence of a
/// fixed wall clock time that a fall-back repeats.
fn next_fire<Tz: TimeZone>(cron: &Cron, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    let fixed_time = cron.determine_job_type() == JobType::FixedTime;
    let mut cursor = after.clone();
    // A repeated time is skipped at most once before the search leaves the repetition.
    for _ in 0..3 {
        let next = cron.find_next_occurrence(&cursor, false).ok()?;
        if !(fixed_time && is_second_occurrence(&next)) {
            return Some(next);
        }
        cursor = next;
    }
    None
}

/// Whether `instant`'s wall clock time also happened earlier, before a clock went back.
fn is_second_occurrence<Tz: TimeZone>(instant: &DateTime<Tz>) -> bool {
    match instant
        .timezone()
        .from_local_datetime(&instant.naive_local())
    {
        LocalResult::Ambiguous(first, _) => first != *instant,
        _ => false,
    }
}

/// Whether `cron` fires at all. Without a year field a pattern repeats at least every 400
/// years, so searching forward from any date (croner searches up to the year 5000) decides it.
fn fires_ever(cron: &Cron) -> bool {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .is_some_and(|start| cron.find_next_occurrence(&start, true).is_ok())
}

/// Checks and compiles a cron expression of 5 or 6 fields. The error is a detail.
fn compile_cron(expr: &str) -> Result<Cron, String> {
    if let Some(bad) = expr
        .chars()
        .find(|c| !c.is_whitespace() && !is_cron_char(*c))
    {
        return Err(format!(
            "{bad:?} cannot appear in a cron expression (fields use digits, names, * , - / ? # L W)"
        ));
    }
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "a cron expression has 5 fields (6 with seconds first), not {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|error| format!("invalid cron expression: {error}"))
}

/// The seconds, minutes and hours fields of a cron expression for `time`.
fn cron_time(time: &NaiveTime) -> String {
    let (hour, minute, second) = (time.hour(), time.minute(), time.second());
    if second == 0 {
        format!("{minute} {hour}")
    } else {
        format!("{second} {minute} {hour}")
    }
}

/// Parses `H:MM`, `HH:MM` or `HH:MM:SS` on a 24-hour clock. The error is a detail.
fn parse_time(text: &str) -> Result<NaiveTime, String> {
    let invalid = || format!("{text:?} is not a time of day (write HH:MM on a 24-hour clock)");
    let parts: Vec<&str> = text.split(':').collect();
    let digits = |part: &str, min_len: usize| {
        (min_len..=2).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
    };
    let (hour, minute, second) = match parts.as_slice() {
        [h, m] if digits(h, 1) && digits(m, 2) => (*h, *m, "0"),
        [h, m, s] if digits(h, 1) && digits(m, 2) && digits(s, 2) => (*h, *m, *s),
        _ => return Err(invalid()),
    };
    let number = |part: &str| part.parse::<u32>().map_err(|_| invalid());
    NaiveTime::from_hms_opt(number(hour)?, number(minute)?, number(second)?).ok_or_else(|| {
        format!("{text:?} is not a time of day (hours go up to 23, minutes and seconds to 59)")
    })
}

/// Parses a full or three-letter English weekday name in any case. The error is a detail.
fn parse_weekday(text: &str) -> Result<Weekday, String> {
    WEEKDAYS
        .iter()
        .find(|(_, full, abbr)| text.eq_ignore_ascii_case(full) || text.eq_ignore_ascii_case(abbr))
        .map(|(day, _, _)| *day)
        .ok_or_else(|| {
            format!("{text:?} is not a day of the week (write \"Monday\" or \"mon\", for example)")
        })
}

/// The entry of [`WEEKDAYS`] for `day`.
fn weekday_names(day: Weekday) -> (&'static str, &'static str) {
    let (_, full, abbr) = WEEKDAYS[day.num_days_from_monday() as usize];
    (full, abbr)
}

/// The full English name of `day`, such as `"Monday"`.
fn weekday_name(day: Weekday) -> &'static str {
    weekday_names(day).0
}

/// The cron abbreviation of `day`, such as `"MON"`.
fn weekday_abbr(day: Weekday) -> &'static str {
    weekday_names(day).1
}

/// Writes a time as `HH:MM`, or `HH:MM:SS` when it has seconds.
fn write_time(f: &mut fmt::Formatter<'_>, time: &NaiveTime) -> fmt::Result {
    write!(f, "{:02}:{:02}", time.hour(), time.minute())?;
    if time.second() != 0 {
        write!(f, ":{:02}", time.second())?;
    }
    Ok(())
}

impl fmt::Display for Schedule {
    /// Writes `"09:00"`, `"Monday 10:00"` or the cron expression; [`Schedule::parse`] reads it
    /// back to an equal schedule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Daily { time } => write_time(f, time),
            Self::Weekly { day, time } => {
                write!(f, "{} ", weekday_name(*day))?;
                write_time(f, time)
            }
            Self::Cron { .. } => f.write_str(&self.cron_expr()),
        }
    }
}

impl PartialEq for Schedule {
    /// Compares the canonical cron expressions ([`Schedule::cron_expr`]).
    fn eq(&self, other: &Self) -> bool {
        self.cron_expr() == other.cron_expr()
    }
}

impl Eq for Schedule {}

impl FromStr for Schedule {
    type Err = GrammarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Utc};
    use chrono_tz::Tz;
    use proptest::prelude::*;

    fn time(hour: u32, minute: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(hour, minute, 0).unwrap()
    }

    fn madrid() -> Tz {
        parse_timezone("Europe/Madrid").unwrap()
    }

    fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Tz> {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn seed_schedules() {
        let daily = Schedule::parse("09:00").unwrap();
        assert!(matches!(daily, Schedule::Daily { time: t } if t == time(9, 0)));
        assert_eq!(daily.to_string(), "09:00");
        assert_eq!(daily.cron_expr(), "0 9 * * *");

        let weekly = Schedule::parse("Monday 10:00").unwrap();
        assert!(matches!(
            weekly,
            Schedule::Weekly { day: Weekday::Mon, time: t } if t == time(10, 0)
        ));
        assert_eq!(weekly.to_string(), "Monday 10:00");
        assert_eq!(weekly.cron_expr(), "0 10 * * MON");
    }

    #[test]
    fn spellings() {
        assert_eq!(Schedule::parse("9:00").unwrap().to_string(), "09:00");
        assert_eq!(Schedule::parse(" 23:59 ").unwrap().to_string(), "23:59");
        assert_eq!(Schedule::parse("00:00").unwrap().cron_expr(), "0 0 * * *");
        assert_eq!(
            Schedule::parse("07:05:30").unwrap().cron_expr(),
            "30 5 7 * * *"
        );
        assert_eq!(Schedule::parse("07:05:30").unwrap().to_string(), "07:05:30");
        for text in ["mon 10:00", "MON 10:00", "monday 10:00", "MONDAY   10:00"] {
            assert_eq!(Schedule::parse(text).unwrap().to_string(), "Monday 10:00");
        }
        assert_eq!(
            Schedule::parse("sun 7:30").unwrap().cron_expr(),
            "30 7 * * SUN"
        );
        assert_eq!(
            Schedule::parse("Sunday 7:30").unwrap().to_string(),
            "Sunday 07:30"
        );
    }

    #[test]
    fn cron_expressions() {
        for (text, canonical) in [
            ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
            ("*/15 * * * *", "*/15 * * * *"),
            ("0 0 9 * * *", "0 0 9 * * *"),
            ("0  9 *  * mon-fri ", "0 9 * * MON-FRI"),
            ("0 12 L * *", "0 12 L * *"),
            ("0 12 * * 5#2", "0 12 * * 5#2"),
        ] {
            let schedule = Schedule::parse(text).unwrap();
            assert!(matches!(schedule, Schedule::Cron { .. }), "{text}");
            assert_eq!(schedule.to_string(), canonical);
        }
        assert_eq!(
            Schedule::parse("0 9 * * *").unwrap(),
            Schedule::parse("09:00").unwrap()
        );
        assert_ne!(
            Schedule::parse("0 9 * * *").unwrap(),
            Schedule::parse("10:00").unwrap()
        );
    }

    #[test]
    fn rejections() {
        for text in [
            "",
            "  ",
            "9",
            "9:0",
            "24:00",
            "12:60",
            "123:00",
            "09:00:60",
            "noon",
            "Monday",
            "Funday 10:00",
            "Monday 25:00",
            "mo 10:00",
            "10:00 Monday",
            "* * * *",
            "0 0 0 * * * *",
            "61 * * * *",
            "0 25 * * *",
            "0 9 * * XYZ",
            "0 9 * * MON;",
            "@daily",
            "0 9 * * * * * *",
            "0 9 ½ * *",
            "-1 * * * *",
            "0 0 31 2 *",
            "0 0 31 4,6,9,11 *",
        ] {
            let error = Schedule::parse(text).expect_err(text);
            assert_eq!(error.expected, "a schedule", "{text}");
            assert_eq!(error.input, text);
            assert!(!error.detail.is_empty());
        }
    }

    #[test]
    fn cron_that_never_fires_is_rejected() {
        let error = Schedule::parse("0 0 30 2 *").unwrap_err();
        assert!(error.detail.contains("never fires"), "{error}");
        // Rare but real: February 29th.
        assert!(Schedule::parse("0 0 29 2 *").is_ok());
    }

    #[test]
    fn timezones() {
        assert_eq!(
            parse_timezone("Europe/Madrid"),
            Ok(chrono_tz::Europe::Madrid)
        );
        assert_eq!(parse_timezone(" UTC "), Ok(chrono_tz::UTC));
        assert_eq!(
            parse_timezone("europe/madrid"),
            Ok(chrono_tz::Europe::Madrid)
        );
        assert_eq!(
            parse_timezone("America/New_York"),
            Ok(chrono_tz::America::New_York)
        );
        for bad in ["", "Mars/Olympus_Mons", "Europe/", "+02:00", "CEST"] {
            let error = parse_timezone(bad).expect_err(bad);
            assert_eq!(error.expected, "a time zone");
        }
    }

    #[test]
    fn next_after_is_strictly_after() {
        let daily = Schedule::parse("09:00").unwrap();
        let at_nine = Utc.with_ymd_and_hms(2026, 5, 4, 9, 0, 0).unwrap();
        assert_eq!(
            daily.next_after(&at_nine),
            Some(Utc.with_ymd_and_hms(2026, 5, 5, 9, 0, 0).unwrap())
        );
        let before = Utc.with_ymd_and_hms(2026, 5, 4, 8, 59, 59).unwrap();
        assert_eq!(daily.next_after(&before), Some(at_nine));
    }

    #[test]
    fn next_after_keeps_the_zone() {
        let daily = Schedule::parse("09:00").unwrap();
        let tz = madrid();
        let next = daily.next_after(&local(tz, 2026, 7, 1, 12, 0)).unwrap();
        assert_eq!(next, local(tz, 2026, 7, 2, 9, 0));
        assert_eq!(next.timezone(), tz);
        // 09:00 in Madrid summer time is 07:00 UTC.
        assert_eq!(next.with_timezone(&Utc).hour(), 7);
    }

    #[test]
    fn spring_forward_fires_once_at_a_valid_time() {
        // On 2026-03-29 Madrid's clocks jump from 02:00 to 03:00: 02:30 does not exist.
        let tz = madrid();
        let schedule = Schedule::parse("02:30").unwrap();
        let fires = schedule.fires_between(
            &local(tz, 2026, 3, 28, 0, 0),
            &local(tz, 2026, 3, 31, 0, 0),
            100,
        );
        let dates: Vec<NaiveDate> = fires.iter().map(|t| t.date_naive()).collect();
        assert_eq!(
            dates,
            [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]
        );
        let gap_day = &fires[1];
        assert_eq!(
            gap_day.time(),
            time(3, 0),
            "the next valid instant that day"
        );
        assert_eq!(
            gap_day.with_timezone(&Utc),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()
        );
        assert_eq!(fires[0].time(), time(2, 30));
        assert_eq!(fires[2].time(), time(2, 30));
    }

    #[test]
    fn fall_back_fires_exactly_once() {
        // On 2026-10-25 Madrid's clocks go back from 03:00 to 02:00: 02:30 happens twice.
        let tz = madrid();
        let schedule = Schedule::parse("02:30").unwrap();
        let fires = schedule.fires_between(
            &local(tz, 2026, 10, 24, 0, 0),
            &local(tz, 2026, 10, 27, 0, 0),
            100,
        );
        let on_the_day: Vec<_> = fires
            .iter()
            .filter(|t| t.date_naive() == date(2026, 10, 25))
            .collect();
        assert_eq!(on_the_day.len(), 1, "{fires:?}");
        // The first occurrence, still on summer time (+02:00), 00:30 UTC.
        assert_eq!(
            on_the_day[0].with_timezone(&Utc),
            Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap()
        );
        assert_eq!(fires.len(), 3);
        assert!(fires.iter().all(|t| t.time() == time(2, 30)));
    }

    #[test]
    fn fall_back_skips_the_repetition_when_asked_from_inside_it() {
        let tz = madrid();
        let schedule = Schedule::parse("02:30").unwrap();
        // 02:10 on winter time (+01:00), after the first 02:30 has already happened.
        let inside = Utc
            .with_ymd_and_hms(2026, 10, 25, 1, 10, 0)
            .unwrap()
            .with_timezone(&tz);
        assert_eq!(inside.time(), time(2, 10));
        assert_eq!(
            schedule.next_after(&inside),
            Some(local(tz, 2026, 10, 26, 2, 30))
        );
        // Asked before the first occurrence, it is the first occurrence.
        let before = local(tz, 2026, 10, 25, 2, 10);
        assert_eq!(
            schedule.next_after(&before).map(|t| t.with_timezone(&Utc)),
            Some(Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap())
        );
    }

    #[test]
    fn interval_crons_fire_in_both_halves_of_a_fall_back() {
        let tz = madrid();
        let schedule = Schedule::parse("0 * * * *").unwrap();
        let fires = schedule.fires_between(
            &local(tz, 2026, 10, 25, 0, 30),
            &local(tz, 2026, 10, 25, 4, 30),
            100,
        );
        // 01:00, 02:00 (summer), 02:00 (winter), 03:00, 04:00: one per real hour.
        assert_eq!(fires.len(), 5, "{fires:?}");
        for pair in fires.windows(2) {
            assert_eq!(pair[1] - pair[0], chrono::TimeDelta::hours(1));
        }
    }

    #[test]
    fn weekly_over_a_month() {
        let tz = madrid();
        let schedule = Schedule::parse("Monday 10:00").unwrap();
        // March 2026 has five Mondays (2, 9, 16, 23, 30) and a DST change on the 29th.
        let fires = schedule.fires_between(
            &local(tz, 2026, 3, 1, 0, 0),
            &local(tz, 2026, 4, 1, 0, 0),
            100,
        );
        assert_eq!(fires.len(), 5);
        // February 2026 has four.
        let february = schedule.fires_between(
            &local(tz, 2026, 2, 1, 0, 0),
            &local(tz, 2026, 3, 1, 0, 0),
            100,
        );
        assert_eq!(february.len(), 4);
        for fire in fires.iter().chain(&february) {
            assert_eq!(fire.weekday(), Weekday::Mon);
            assert_eq!(fire.time(), time(10, 0));
        }
    }

    #[test]
    fn fires_between_is_half_open_and_limited() {
        let daily = Schedule::parse("09:00").unwrap();
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 1, 4, 9, 0, 0).unwrap();
        let fires = daily.fires_between(&from, &to, 100);
        assert_eq!(fires.len(), 3);
        assert_eq!(
            fires.first(),
            Some(&Utc.with_ymd_and_hms(2026, 1, 2, 9, 0, 0).unwrap())
        );
        assert_eq!(fires.last(), Some(&to));
        assert_eq!(daily.fires_between(&from, &to, 2).len(), 2);
        assert!(daily.fires_between(&from, &to, 0).is_empty());
        assert!(daily.fires_between(&to, &from, 10).is_empty());
    }

    #[test]
    fn cron_with_seconds_and_business_days() {
        let schedule = Schedule::parse("0 9 * * MON-FRI").unwrap();
        let from = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap(); // a Friday
        let fires = schedule.fires_between(&from, &(from + chrono::TimeDelta::days(7)), 10);
        let days: Vec<Weekday> = fires.iter().map(|t| t.weekday()).collect();
        assert_eq!(
            days,
            [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ]
        );

        let seconds = Schedule::parse("30 0 9 * * *").unwrap();
        assert_eq!(
            seconds.next_after(&from),
            Some(Utc.with_ymd_and_hms(2026, 5, 2, 9, 0, 30).unwrap())
        );
    }

    #[test]
    fn hand_built_invalid_cron_never_fires() {
        let schedule = Schedule::Cron {
            expr: "not cron".into(),
        };
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(schedule.next_after(&now), None);
        assert!(
            schedule
                .fires_between(&now, &(now + chrono::TimeDelta::days(1)), 5)
                .is_empty()
        );
    }

    fn clock_time() -> impl Strategy<Value = NaiveTime> {
        (
            0u32..24,
            0u32..60,
            prop_oneof![3 => Just(0u32), 1 => 0u32..60],
        )
            .prop_map(|(h, m, s)| NaiveTime::from_hms_opt(h, m, s).unwrap())
    }

    fn weekday() -> impl Strategy<Value = Weekday> {
        proptest::sample::select(WEEKDAYS.map(|(day, _, _)| day).to_vec())
    }

    fn cron_field(max: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            (0..=max).prop_map(|n| n.to_string()),
            (1..=max).prop_map(|n| format!("*/{n}")),
            (0..=max, 0..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        ]
    }

    fn cron_schedule() -> impl Strategy<Value = Schedule> {
        (
            proptest::option::of(cron_field(59)),
            cron_field(59),
            cron_field(23),
            prop_oneof![
                Just("*".to_string()),
                (1u32..=28).prop_map(|d| d.to_string())
            ],
            prop_oneof![Just("*".to_string()), Just("JAN-JUN".to_string())],
            prop_oneof![
                Just("*".to_string()),
                Just("MON-FRI".to_string()),
                Just("sun".to_string())
            ],
        )
            .prop_map(|(s, m, h, dom, month, dow)| {
                let expr = match s {
                    Some(s) => format!("{s} {m} {h} {dom} {month} {dow}"),
                    None => format!("{m} {h} {dom} {month} {dow}"),
                };
                Schedule::Cron { expr }
            })
    }

    fn schedule() -> impl Strategy<Value = Schedule> {
        prop_oneof![
            clock_time().prop_map(|time| Schedule::Daily { time }),
            (weekday(), clock_time()).prop_map(|(day, time)| Schedule::Weekly { day, time }),
            cron_schedule(),
        ]
    }

    fn instant() -> impl Strategy<Value = DateTime<Tz>> {
        let zones = vec![
            chrono_tz::UTC,
            chrono_tz::Europe::Madrid,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe,
        ];
        (proptest::sample::select(zones), 0i64..(40 * 365 * 86_400)).prop_map(|(tz, offset)| {
            // From 2000-01-01 UTC.
            Utc.timestamp_opt(946_684_800 + offset, 0)
                .unwrap()
                .with_timezone(&tz)
        })
    }

    proptest! {
        #[test]
        fn display_round_trips(schedule in schedule()) {
            let parsed = Schedule::parse(&schedule.to_string());
            prop_assert_eq!(parsed, Ok(schedule));
        }

        #[test]
        fn variants_survive_the_round_trip(time in clock_time(), day in weekday()) {
            let daily = Schedule::parse(&Schedule::Daily { time }.to_string());
            let daily_ok = matches!(daily, Ok(Schedule::Daily { time: t }) if t == time);
            prop_assert!(daily_ok, "{:?}", daily);
            let weekly = Schedule::parse(&Schedule::Weekly { day, time }.to_string());
            let weekly_ok =
                matches!(weekly, Ok(Schedule::Weekly { day: d, time: t }) if d == day && t == time);
            prop_assert!(weekly_ok, "{:?}", weekly);
        }

        #[test]
        fn timezone_names_round_trip(index in 0..chrono_tz::TZ_VARIANTS.len()) {
            let tz = chrono_tz::TZ_VARIANTS[index];
            prop_assert_eq!(parse_timezone(&tz.to_string()), Ok(tz));
            prop_assert_eq!(parse_timezone(&tz.name().to_lowercase()).map(|t| t.name().to_lowercase()), Ok(tz.name().to_lowercase()));
        }

        #[test]
        fn next_after_is_later_and_on_time(time in clock_time(), day in weekday(), after in instant()) {
            let daily = Schedule::Daily { time };
            let next = daily.next_after(&after).unwrap();
            prop_assert!(next > after);
            prop_assert!(next - after <= chrono::TimeDelta::hours(26));
            // On a gap day the next valid instant is used instead, so it is never earlier.
            prop_assert!(next.time() >= time || next.date_naive() > after.date_naive());

            let weekly = Schedule::Weekly { day, time };
            let next = weekly.next_after(&after).unwrap();
            prop_assert!(next > after);
            prop_assert!(next - after <= chrono::TimeDelta::days(7) + chrono::TimeDelta::hours(2));
            prop_assert_eq!(next.weekday(), day);
        }

        #[test]
        fn fires_are_increasing_and_in_range(schedule in schedule(), from in instant(), hours in 0i64..200) {
            let to = from + chrono::TimeDelta::hours(hours);
            let fires = schedule.fires_between(&from, &to, 50);
            prop_assert!(fires.len() <= 50);
            prop_assert!(fires.iter().all(|t| *t > from && *t <= to));
            prop_assert!(fires.windows(2).all(|pair| pair[0] < pair[1]));
        }

        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = Schedule::parse(&text);
            let _ = parse_timezone(&text);
        }

        #[test]
        fn never_panics_on_its_alphabet(text in "[0-9*,/?#LW+: \\-]{0,20}|[a-zA-Z0-9: ]{0,16}") {
            if let Ok(schedule) = Schedule::parse(&text) {
                let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
                let _ = schedule.fires_between(&start, &(start + chrono::TimeDelta::days(2)), 3);
            }
        }

        #[test]
        fn never_panics_on_cron_shaped_text(fields in proptest::collection::vec("[0-9*,/?#LW\\-A-Z]{1,6}", 5..=6)) {
            let text = fields.join(" ");
            if let Ok(schedule) = Schedule::parse(&text) {
                let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
                let _ = schedule.next_after(&start);
            }
        }
    }
}
