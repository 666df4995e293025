//! `concierto run ls` filters and paging: `--since` / `--until` read as dates or
//! date-times in the display zone (the studio's) or as RFC 3339, `--query`, and
//! `--page-token` to go on where an earlier listing stopped.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use concierto_proto::v1;

use crate::client::{CliError, Conn};
use crate::output::Zone;

/// Largest page asked for when following pages.
const PAGE: u32 = 200;

/// Which runs `run ls` asks for.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub state: i32,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub query: Option<String>,
}

/// A page of runs and where the next one starts (empty: no more).
pub struct RunPage {
    pub runs: Vec<v1::Run>,
    pub next_page_token: String,
}

/// Reads a `--since` / `--until` value: RFC 3339 (`2026-03-29T09:00:00+02:00`),
/// a date-time in `zone` (`2026-03-29 09:00`, `2026-03-29T09:00:30`) or a date
/// in `zone` (`2026-03-29`), which means the start of that day, or with
/// `end_of_day` (for `--until`) the start of the next one, so that the day is
/// included.
pub fn parse_instant(s: &str, zone: Zone, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok());
    let local = match local {
        Some(t) => t,
        None => {
            let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                format!(
                    "{s:?} is not a date or time: use 2026-03-29, \"2026-03-29 09:00\" (in the studio's zone) or RFC 3339 (2026-03-29T09:00:00+02:00)"
                )
            })?;
            let day = if end_of_day {
                day.succ_opt()
                    .ok_or_else(|| format!("{s:?} is out of range"))?
            } else {
                day
            };
            day.and_time(NaiveTime::MIN)
        }
    };
    in_zone(local, zone).ok_or_else(|| {
        format!("{s:?} does not exist in the studio's zone (a daylight saving gap); give an RFC 3339 time with its offset")
    })
}

/// `local` read in `zone` (the earlier of two readings at a daylight saving fold).
fn in_zone(local: NaiveDateTime, zone: Zone) -> Option<DateTime<Utc>> {
    match zone {
        Zone::Named(tz) => tz
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
        Zone::Local => chrono::Local
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
        Zone::Utc => Some(Utc.from_utc_datetime(&local)),
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Up to `limit` runs from `page_token` on (every page followed), and the token
/// of the page after them.
pub async fn list_runs(
    c: &Conn,
    filter: &RunFilter,
    limit: u32,
    page_token: String,
) -> Result<RunPage, CliError> {
    let mut runs = Vec::new();
    let mut token = page_token;
    while (runs.len() as u32) < limit {
        let req = v1::ListRunsRequest {
            workflow: filter.workflow.clone().unwrap_or_default(),
            trigger: String::new(),
            state: filter.state,
            // Never more than is left, so the token is exactly where this stops.
            page_size: (limit - runs.len() as u32).min(PAGE),
            page_token: token.clone(),
            since: filter.since.map(timestamp),
            until: filter.until.map(timestamp),
            query: filter.query.clone().unwrap_or_default(),
        };
        let page = c.unary(c.client.clone().list_runs(req)).await?;
        let got = page.runs.len();
        runs.extend(page.runs);
        token = page.next_page_token;
        if token.is_empty() || got == 0 {
            break;
        }
    }
    runs.truncate(limit as usize);
    Ok(RunPage {
        runs,
        next_page_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn madrid() -> Zone {
        Zone::Named("Europe/Madrid".parse().unwrap())
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn dates_and_times_are_read_in_the_studio_zone() {
        assert_eq!(
            parse_instant("2026-03-29", madrid(), false),
            Ok(utc("2026-03-28T23:00:00Z"))
        );
        // --until a day includes that day.
        assert_eq!(
            parse_instant("2026-03-29", madrid(), true),
            Ok(utc("2026-03-29T22:00:00Z"))
        );
        assert_eq!(
            parse_instant("2026-03-29 09:00", madrid(), false),
            Ok(utc("2026-03-29T07:00:00Z"))
        );
        assert_eq!(
            parse_instant("2026-03-29T09:00:30", Zone::Utc, false),
            Ok(utc("2026-03-29T09:00:30Z"))
        );
        assert_eq!(
            parse_instant("2026-03-29T09:00:00+02:00", Zone::Utc, true),
            Ok(utc("2026-03-29T07:00:00Z"))
        );
    }

    #[test]
    fn nonsense_and_a_dst_gap_are_errors_that_say_what_to_write() {
        let e = parse_instant("yesterday", madrid(), false).unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
        let e = parse_instant("2026-03-29 02:30", madrid(), false).unwrap_err();
        assert!(e.contains("daylight saving"), "{e}");
        assert!(parse_instant(&"9".repeat(10_000), madrid(), false).is_err());
    }
}
