//! Progress metrics: the overview (every metric against its target, its value
//! with its unit and a sparkline) and one metric's page, `GET /metrics/{name}`:
//! its series as an SVG chart with a time axis in the studio's zone, a value
//! axis in the metric's unit, the target as a line, and rollups per day, week
//! or month (`?rollup=`).
//!
//! ```text
//!  ?rollup=raw (7 days, the tracker's points) | day (30 days) | week (26) | month (12)
//!     ─▶ tracker.metrics.get {names: [name], window_hours}  (≤ 200 points, equal buckets)
//!     ─▶ buckets per local day / week (from Monday) / month of the studio's zone,
//!        added up as the tracker does: a sum for counts, a mean for levels,
//!        the latest for samples
//!     ─▶ <svg id="metric-chart">: axes, ticks, target line, series
//! ```
//!
//! Units: the tracker's (`s` for a duration target, a sample's own unit such
//! as `ratio`), else what the studio says (`type: content_pieces`). Seconds
//! read as durations, ratios as percents.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Timelike, Utc};
use concierto_core::config::{Goal, MetricDef};
use concierto_core::grammar::Quantity;
use concierto_core::subjects;
use concierto_proto::v1;
use serde::Deserialize;

use crate::DashboardState;
use crate::auth::Authed;
use crate::html::{self, esc, human, num, page, refusal_box, seg};
use crate::live;
use crate::services::{Refusal, ask};

/// How a chart's points are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rollup {
    /// The tracker's points over 7 days.
    Raw,
    /// One point per day of the studio's zone, 30 days.
    Day,
    /// One point per week (from Monday), 26 weeks.
    Week,
    /// One point per month, 12 months.
    Month,
}

impl Rollup {
    const ALL: [Rollup; 4] = [Rollup::Raw, Rollup::Day, Rollup::Week, Rollup::Month];

    fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "raw" => Some(Rollup::Raw),
            "day" => Some(Rollup::Day),
            "week" => Some(Rollup::Week),
            "month" => Some(Rollup::Month),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Rollup::Raw => "raw",
            Rollup::Day => "day",
            Rollup::Week => "week",
            Rollup::Month => "month",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Rollup::Raw => "7 days as recorded",
            Rollup::Day => "per day, 30 days",
            Rollup::Week => "per week, 26 weeks",
            Rollup::Month => "per month, 12 months",
        }
    }

    /// How far back the tracker is asked for.
    fn window_hours(self) -> u32 {
        match self {
            Rollup::Raw => 7 * 24,
            Rollup::Day => 30 * 24,
            Rollup::Week => 26 * 7 * 24,
            Rollup::Month => 366 * 24,
        }
    }
}

/// How the points of one bucket add up (as the tracker adds a window's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregation {
    Sum,
    Mean,
    Last,
}

/// The studio's definition of a metric, when it is a progress metric.
fn definition<'a>(studio: &'a concierto_core::config::Studio, name: &str) -> Option<&'a MetricDef> {
    studio.progress_metrics.iter().find(|m| m.name == name)
}

/// How the tracker adds this metric's observations up.
fn aggregation(def: Option<&MetricDef>) -> Aggregation {
    match def {
        None => Aggregation::Last,
        Some(d) if d.name == "daily_output" || d.kind.as_deref() == Some("content_pieces") => {
            Aggregation::Sum
        }
        Some(_) => Aggregation::Mean,
    }
}

/// The unit of a metric's values: the tracker's, else the studio's.
pub(crate) fn unit_of(m: &v1::Metric, def: Option<&MetricDef>) -> String {
    if !m.unit.is_empty() {
        return m.unit.clone();
    }
    match def {
        Some(d) => match d.goal {
            Goal::Target(t) if matches!(t.value, Quantity::Duration(_)) => "s".into(),
            _ if d.kind.as_deref() == Some("content_pieces") => "pieces".into(),
            _ => String::new(),
        },
        None => String::new(),
    }
}

/// A value with its unit: `1h 05m`, `4.5%`, `10 pieces`, `0.85`.
pub(crate) fn with_unit(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    match unit {
        "s" if v == 0.0 => "0".into(),
        "s" => {
            let d = Duration::try_from_secs_f64(v.abs()).unwrap_or(Duration::MAX);
            format!("{}{}", if v < 0.0 { "-" } else { "" }, human(d))
        }
        "ratio" => format!("{}%", num(v * 100.0)),
        "" => num(v),
        u => format!("{} {u}", num(v)),
    }
}

/// The value axis' title for a unit.
fn axis_title(unit: &str) -> String {
    match unit {
        "s" => "duration".into(),
        "ratio" => "ratio (%)".into(),
        "" => "value".into(),
        u => u.to_string(),
    }
}

/// The target's level on the value axis, when the goal is a level.
fn target_level(def: Option<&MetricDef>) -> Option<f64> {
    match def?.goal {
        Goal::Target(t) => Some(t.value.as_f64()),
        Goal::Improvement(_) => None,
    }
}

fn points(m: &v1::Metric) -> Vec<(DateTime<Utc>, f64)> {
    m.series
        .iter()
        .filter(|p| p.value.is_finite())
        .filter_map(|p| html::time(p.at.as_ref()).map(|t| (t, p.value)))
        .collect()
}

/// Midnight of `d` in `tz` (the first instant of that day when a change of
/// clocks skips midnight).
fn local_midnight<Z: TimeZone>(tz: &Z, d: NaiveDate) -> DateTime<Utc> {
    let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&naive).earliest() {
        Some(t) => t.with_timezone(&Utc),
        None => (1..=3)
            .filter_map(|h| {
                tz.from_local_datetime(&(naive + chrono::Duration::hours(h)))
                    .earliest()
            })
            .next()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| naive.and_utc()),
    }
}

/// The start of the day, week (Monday) or month `t` falls in, in `tz`.
fn bucket_start<Z: TimeZone>(t: DateTime<Utc>, tz: &Z, rollup: Rollup) -> DateTime<Utc> {
    let d = t.with_timezone(tz).date_naive();
    let start = match rollup {
        Rollup::Raw | Rollup::Day => d,
        Rollup::Week => d
            .checked_sub_days(Days::new(u64::from(d.weekday().num_days_from_monday())))
            .unwrap_or(d),
        Rollup::Month => d.with_day(1).unwrap_or(d),
    };
    local_midnight(tz, start)
}

/// `points` grouped per `rollup` in `tz`, each bucket at its start.
pub(crate) fn roll_up<Z: TimeZone>(
    points: &[(DateTime<Utc>, f64)],
    rollup: Rollup,
    tz: &Z,
    agg: Aggregation,
) -> Vec<(DateTime<Utc>, f64)> {
    if rollup == Rollup::Raw {
        return points.to_vec();
    }
    // (sum, count, latest time, latest value) per bucket.
    let mut buckets: BTreeMap<DateTime<Utc>, (f64, u32, DateTime<Utc>, f64)> = BTreeMap::new();
    for (t, v) in points {
        let e = buckets
            .entry(bucket_start(*t, tz, rollup))
            .or_insert((0.0, 0, *t, *v));
        e.0 += v;
        e.1 += 1;
        if *t >= e.2 {
            e.2 = *t;
            e.3 = *v;
        }
    }
    buckets
        .into_iter()
        .map(|(start, (sum, n, _, last))| {
            let v = match agg {
                Aggregation::Sum => sum,
                Aggregation::Mean => sum / f64::from(n.max(1)),
                Aggregation::Last => last,
            };
            (start, v)
        })
        .collect()
}

/// A round step near `span / 5`: 1, 2 or 5 × 10ⁿ (for durations, a step of
/// the clock: seconds, minutes, hours, days).
fn nice_step(span: f64, unit: &str) -> f64 {
    let rough = (span / 5.0).max(f64::MIN_POSITIVE);
    if unit == "s" {
        const STEPS: [f64; 17] = [
            1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
            7200.0, 21600.0, 43200.0, 86400.0,
        ];
        if let Some(s) = STEPS.iter().find(|s| **s >= rough) {
            return *s;
        }
    }
    let mag = 10f64.powf(rough.log10().floor());
    let f = rough / mag;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// Ticks on the time axis: instants and their labels, at most 8, on round
/// local times (hours, days, Mondays, first days of months).
fn time_ticks<Z: TimeZone>(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tz: &Z,
) -> Vec<(DateTime<Utc>, String)>
where
    Z::Offset: Display,
{
    const MAX: usize = 8;
    let span = to - from;
    let local = |t: DateTime<Utc>| t.with_timezone(tz);
    if span <= chrono::Duration::days(2) {
        let first = from
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(from);
        let hours: Vec<DateTime<Utc>> = (0..=50)
            .map(|h| first + chrono::Duration::hours(h))
            .filter(|t| *t >= from && *t <= to)
            .collect();
        for step in [1, 2, 3, 6, 12, 24] {
            let picked: Vec<DateTime<Utc>> = hours
                .iter()
                .copied()
                .filter(|t| local(*t).hour() % step == 0)
                .collect();
            if picked.len() <= MAX {
                return picked
                    .into_iter()
                    .map(|t| {
                        let l = local(t);
                        let label = if l.hour() == 0 {
                            l.format("%b %d").to_string()
                        } else {
                            l.format("%H:%M").to_string()
                        };
                        (t, label)
                    })
                    .collect();
            }
        }
        return Vec::new();
    }
    let (d0, d1) = (local(from).date_naive(), local(to).date_naive());
    if span <= chrono::Duration::days(120) {
        let days: Vec<NaiveDate> = d0.iter_days().take_while(|d| *d <= d1).take(130).collect();
        for step in [1u32, 2, 7, 14, 28] {
            let picked: Vec<NaiveDate> = days
                .iter()
                .copied()
                .filter(|d| match step {
                    1 => true,
                    2 => d.ordinal0() % 2 == 0,
                    _ => {
                        d.weekday() == chrono::Weekday::Mon
                            && (d.iso_week().week0() % (step / 7)) == 0
                    }
                })
                .collect();
            let picked: Vec<(DateTime<Utc>, NaiveDate)> = picked
                .into_iter()
                .map(|d| (local_midnight(tz, d), d))
                .filter(|(t, _)| *t >= from && *t <= to)
                .collect();
            if picked.len() <= MAX {
                return picked
                    .into_iter()
                    .map(|(t, d)| (t, d.format("%b %d").to_string()))
                    .collect();
            }
        }
        return Vec::new();
    }
    let months: Vec<NaiveDate> = d0
        .iter_days()
        .take_while(|d| *d <= d1)
        .take(800)
        .filter(|d| d.day() == 1)
        .collect();
    for step in [1u32, 2, 3, 6, 12] {
        let picked: Vec<(DateTime<Utc>, NaiveDate)> = months
            .iter()
            .copied()
            .filter(|d| d.month0() % step == 0)
            .map(|d| (local_midnight(tz, d), d))
            .filter(|(t, _)| *t >= from && *t <= to)
            .collect();
        if picked.len() <= MAX {
            return picked
                .into_iter()
                .map(|(t, d)| (t, d.format("%b %Y").to_string()))
                .collect();
        }
    }
    Vec::new()
}

/// What a chart shows.
pub(crate) struct Chart<'a, Z: TimeZone> {
    pub name: &'a str,
    pub points: &'a [(DateTime<Utc>, f64)],
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub unit: &'a str,
    /// The target's level and its text (`≥ 10`).
    pub target: Option<(f64, &'a str)>,
    pub rollup: Rollup,
    pub tz: &'a Z,
    /// The zone's name, for the axis title.
    pub tz_name: &'a str,
}

const W: f64 = 760.0;
const H: f64 = 300.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 48.0;

/// The chart as an inline SVG (no script, no style attribute: classes and
/// presentation attributes only).
pub(crate) fn chart<Z: TimeZone>(c: &Chart<'_, Z>) -> String
where
    Z::Offset: Display,
{
    let (from, to) = (
        c.from.min(c.to),
        c.to.max(c.from + chrono::Duration::seconds(1)),
    );
    let pts: Vec<(DateTime<Utc>, f64)> = c
        .points
        .iter()
        .copied()
        .filter(|(t, v)| v.is_finite() && *t >= from && *t <= to)
        .collect();
    // The value range holds every point, the target and zero.
    let mut lo = pts.iter().map(|p| p.1).fold(0.0f64, f64::min);
    let mut hi = pts.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    if let Some((t, _)) = c.target.filter(|(t, _)| t.is_finite()) {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    if !hi.is_finite() || hi <= lo {
        hi = lo + 1.0;
    }
    let step = nice_step(hi - lo, c.unit);
    let lo = (lo / step).floor() * step;
    let hi = ((hi / step).ceil() * step).max(lo + step);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let span_ms = (to - from).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| LEFT + (t - from).num_milliseconds() as f64 / span_ms * pw;
    let y = |v: f64| TOP + (1.0 - (v - lo) / (hi - lo)) * ph;
    let mut out = format!(
        "<svg id=\"metric-chart\" class=\"metric-chart\" viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" \
data-metric=\"{name}\" data-rollup=\"{rollup}\" data-unit=\"{unit}\" data-points=\"{n}\" \
aria-label=\"{name}: {n} points, {rollup_label}\">",
        name = esc(c.name),
        rollup = c.rollup.name(),
        unit = esc(c.unit),
        n = pts.len(),
        rollup_label = c.rollup.label(),
    );
    // The value axis: grid lines and labels.
    let mut v = lo;
    let mut guard = 0;
    while v <= hi + step / 2.0 && guard < 20 {
        let yy = y(v);
        out.push_str(&format!(
            "<g class=\"y-tick\"><line class=\"grid\" x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>\
<text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text></g>",
            x2 = W - RIGHT,
            tx = LEFT - 6.0,
            ty = yy + 4.0,
            label = esc(&with_unit(v, c.unit)),
        ));
        v += step;
        guard += 1;
    }
    // The time axis.
    for (t, label) in time_ticks(from, to, c.tz) {
        let xx = x(t);
        out.push_str(&format!(
            "<g class=\"x-tick\" data-at=\"{at}\"><line class=\"tick\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{y0}\" y2=\"{y1}\"/>\
<text x=\"{xx:.1}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text></g>",
            at = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            y0 = TOP + ph,
            y1 = TOP + ph + 5.0,
            ty = TOP + ph + 18.0,
            label = esc(&label),
        ));
    }
    let zone_now = c.to.with_timezone(c.tz).format("%Z").to_string();
    out.push_str(&format!(
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{yb}\"/>\
<line class=\"axis\" x1=\"{LEFT}\" x2=\"{xr}\" y1=\"{yb}\" y2=\"{yb}\"/>\
<text class=\"axis-title x-title\" x=\"{xm}\" y=\"{yt}\" text-anchor=\"middle\">time in {zone}{abbr}</text>\
<text class=\"axis-title y-title\" x=\"12\" y=\"{ym}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {ym})\" data-unit=\"{unit}\">{title}</text>",
        yb = TOP + ph,
        xr = W - RIGHT,
        xm = LEFT + pw / 2.0,
        yt = H - 6.0,
        ym = TOP + ph / 2.0,
        zone = esc(c.tz_name),
        abbr = if zone_now.is_empty() || zone_now == c.tz_name {
            String::new()
        } else {
            format!(" ({})", esc(&zone_now))
        },
        unit = esc(c.unit),
        title = esc(&axis_title(c.unit)),
    ));
    if let Some((t, text)) = c.target.filter(|(t, _)| t.is_finite()) {
        let yy = y(t);
        out.push_str(&format!(
            "<g class=\"target\" id=\"metric-target\" data-target=\"{t}\"><line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>\
<text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">target {text}</text></g>",
            x2 = W - RIGHT,
            tx = W - RIGHT - 4.0,
            ty = yy - 5.0,
            text = esc(text),
        ));
    }
    if pts.is_empty() {
        out.push_str(&format!(
            "<text class=\"empty\" x=\"{xm}\" y=\"{ym}\" text-anchor=\"middle\">no data yet</text>",
            xm = LEFT + pw / 2.0,
            ym = TOP + ph / 2.0,
        ));
    } else {
        if pts.len() >= 2 {
            let line: Vec<String> = pts
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect();
            out.push_str(&format!(
                "<polyline class=\"series\" fill=\"none\" points=\"{}\"/>",
                line.join(" ")
            ));
        }
        for (t, v) in &pts {
            out.push_str(&format!(
                "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" data-value=\"{v}\"><title>{}: {}</title></circle>",
                x(*t),
                y(*v),
                t.with_timezone(c.tz).format("%Y-%m-%d %H:%M %Z"),
                esc(&with_unit(*v, c.unit)),
            ));
        }
    }
    out.push_str("</svg>");
    out
}

/// `GET /`: every progress metric against its target, and threshold crossings.
pub(crate) async fn overview(State(state): State<DashboardState>, who: Authed) -> Response {
    let studio = state.studio();
    let metrics: Result<v1::GetMetricsResponse, Refusal> = ask(
        &state,
        "tracker",
        subjects::TRACKER_GET_METRICS,
        &v1::GetMetricsRequest::default(),
        None,
    )
    .await;
    let table = match metrics {
        Ok(m) if m.metrics.is_empty() => {
            "<p class=\"muted\">The tracker knows no progress metric.</p>".to_string()
        }
        Ok(m) => {
            let rows: String = m
                .metrics
                .iter()
                .map(|x| {
                    let def = definition(&studio, &x.name);
                    let unit = unit_of(x, def);
                    let series: Vec<(i64, f64)> = points(x)
                        .into_iter()
                        .map(|(t, v)| (t.timestamp(), v))
                        .collect();
                    let empty = series.is_empty();
                    let on = if empty {
                        "<span class=\"muted\">no data yet</span>"
                    } else if x.target.is_empty() {
                        // A sampled series (`engagement_rate`) has no target of its own.
                        "<span class=\"muted\">no target</span>"
                    } else if x.on_target {
                        "<span class=\"badge on\">on target</span>"
                    } else {
                        "<span class=\"badge off\">off target</span>"
                    };
                    let current = if empty {
                        "–".to_string()
                    } else if matches!(def.map(|d| d.goal), Some(Goal::Improvement(_))) {
                        // The tracker gives an improvement goal's progress in percent.
                        format!("{}% better", num(x.current))
                    } else {
                        with_unit(x.current, &unit)
                    };
                    format!(
                        "<tr class=\"metric\" data-metric=\"{name}\" data-unit=\"{unit}\"><td><a href=\"/metrics/{link}\" class=\"metric-link\">{name}</a></td><td>{group}</td>\
<td class=\"num value\">{current}</td><td>{target}</td><td>{on}</td><td><a href=\"/metrics/{link}\" class=\"spark\">{chart}</a></td></tr>",
                        name = esc(&x.name),
                        link = seg(&x.name),
                        unit = esc(&unit),
                        group = esc(&x.group),
                        current = esc(&current),
                        target = esc(&x.target),
                        chart = html::sparkline(&series, 160, 32),
                    )
                })
                .collect();
            format!(
                "<table><thead><tr><th>Metric</th><th>Group</th><th>Value</th><th>Target</th><th></th><th>Series</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        }
        Err(r) => {
            let defined: String = studio
                .progress_metrics
                .iter()
                .map(|m| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td class=\"num\">–</td><td>{}</td></tr>",
                        esc(&m.name),
                        esc(&m.group),
                        esc(&m.goal_text)
                    )
                })
                .collect();
            format!(
                "{}<table><thead><tr><th>Metric</th><th>Group</th><th>Value</th><th>Target</th></tr></thead><tbody>{defined}</tbody></table>",
                refusal_box(&r)
            )
        }
    };
    let body = format!(
        "<section id=\"metrics\" data-live=\"metric\"><h2>Progress metrics</h2>{table}</section>\
<section id=\"thresholds\" data-live=\"metric\"><h2>Threshold events</h2>{}</section>",
        live::crossings_html(&state)
    );
    page(&state, &who, StatusCode::OK, "Overview", "/", &body)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MetricQuery {
    rollup: String,
}

/// `GET /metrics/{name}`: one metric's series as a chart.
pub(crate) async fn metric(
    State(state): State<DashboardState>,
    who: Authed,
    Path(name): Path<String>,
    Query(q): Query<MetricQuery>,
) -> Response {
    let title = format!("Metric {name}");
    let Some(rollup) = Rollup::parse(&q.rollup) else {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown rollup {:?}: raw, day, week or month",
                q.rollup.chars().take(40).collect::<String>()
            ),
        );
        return page(&state, &who, r.status, &title, "/", &refusal_box(&r));
    };
    let got: Result<v1::GetMetricsResponse, Refusal> = ask(
        &state,
        "tracker",
        subjects::TRACKER_GET_METRICS,
        &v1::GetMetricsRequest {
            names: vec![name.clone()],
            window_hours: rollup.window_hours(),
        },
        None,
    )
    .await;
    let m = match got {
        Ok(r) => match r.metrics.into_iter().find(|m| m.name == name) {
            Some(m) => m,
            None => {
                let r = Refusal::new(StatusCode::NOT_FOUND, format!("no metric {name:?}"));
                return page(&state, &who, r.status, &title, "/", &refusal_box(&r));
            }
        },
        Err(r) => return page(&state, &who, r.status, &title, "/", &refusal_box(&r)),
    };
    let studio = state.studio();
    let def = definition(&studio, &m.name);
    let unit = unit_of(&m, def);
    let tz = studio.studio.timezone;
    let tz_name = tz.to_string();
    let now = state.now();
    let from = now - chrono::Duration::hours(i64::from(rollup.window_hours()));
    let pts = roll_up(&points(&m), rollup, &tz, aggregation(def));
    let from = match rollup {
        Rollup::Raw => from,
        _ => bucket_start(from, &tz, rollup),
    };
    let target_text = def
        .map(|d| d.goal_text.clone())
        .unwrap_or_else(|| m.target.clone());
    let svg = chart(&Chart {
        name: &m.name,
        points: &pts,
        from,
        to: now,
        unit: &unit,
        target: target_level(def).map(|t| (t, target_text.as_str())),
        rollup,
        tz: &tz,
        tz_name: &tz_name,
    });
    let tabs: String = Rollup::ALL
        .iter()
        .map(|r| {
            let current = if *r == rollup {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!(
                "<a href=\"/metrics/{link}?rollup={n}\" data-rollup=\"{n}\"{current}>{label}</a>",
                link = seg(&m.name),
                n = r.name(),
                label = r.label(),
            )
        })
        .collect();
    let current = if pts.is_empty() {
        "–".to_string()
    } else if matches!(def.map(|d| d.goal), Some(Goal::Improvement(_))) {
        format!("{}% better", num(m.current))
    } else {
        with_unit(m.current, &unit)
    };
    let goal = match def.map(|d| d.goal) {
        Some(Goal::Improvement(_)) => format!(
            "{} (an improvement goal: the value is the change against the previous period)",
            m.target
        ),
        _ if m.target.is_empty() => "none".into(),
        _ => m.target.clone(),
    };
    let on = if pts.is_empty() || m.target.is_empty() {
        String::new()
    } else if m.on_target {
        "<span class=\"badge on\">on target</span>".into()
    } else {
        "<span class=\"badge off\">off target</span>".into()
    };
    let body = format!(
        "<p><a href=\"/\">← Overview</a></p>\
<section id=\"metric-live\" data-live=\"metric\" data-metric=\"{name}\">\
<dl class=\"stats\"><dt>Now</dt><dd id=\"metric-current\" data-unit=\"{unit}\">{current} {on}</dd>\
<dt>Target</dt><dd>{goal}</dd><dt>Group</dt><dd>{group}</dd><dt>Unit</dt><dd>{unit_text}</dd>\
<dt>Tracked by</dt><dd>{tracker}</dd></dl>\
<nav class=\"rollups\" aria-label=\"rollup\">{tabs}</nav>\
<div class=\"chart-box\">{svg}</div>\
<p class=\"muted\">Times in {tz}. Minute points are kept for the tracker's retention (30 days by default); older weeks and months show what is left.</p></section>",
        name = esc(&m.name),
        unit = esc(&unit),
        current = esc(&current),
        goal = esc(&goal),
        group = esc(&m.group),
        unit_text = esc(if unit.is_empty() { "none" } else { &unit }),
        tracker = esc(if m.tracker.is_empty() {
            "–"
        } else {
            &m.tracker
        }),
        tz = esc(&tz_name),
    );
    page(&state, &who, StatusCode::OK, &title, "/", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn values_read_in_their_unit() {
        assert_eq!(with_unit(5400.0, "s"), "1h 30m");
        assert_eq!(with_unit(0.052, "ratio"), "5.2%");
        assert_eq!(with_unit(10.0, "pieces"), "10 pieces");
        assert_eq!(with_unit(0.85, ""), "0.85");
        assert_eq!(with_unit(f64::NAN, "s"), "–");
    }

    #[test]
    fn rollups_group_by_local_day_week_and_month() {
        // 23:30 UTC on 1 March is 00:30 on 2 March in Madrid (UTC+1).
        let tz = chrono::FixedOffset::east_opt(3600).unwrap_or_else(|| unreachable!());
        let pts = [
            (t("2026-03-01T10:00:00Z"), 2.0),
            (t("2026-03-01T23:30:00Z"), 3.0),
            (t("2026-03-02T08:00:00Z"), 4.0),
            (t("2026-03-09T08:00:00Z"), 5.0),
            (t("2026-04-01T08:00:00Z"), 1.0),
        ];
        let day = roll_up(&pts, Rollup::Day, &tz, Aggregation::Sum);
        assert_eq!(
            day,
            [
                (t("2026-02-28T23:00:00Z"), 2.0),
                (t("2026-03-01T23:00:00Z"), 7.0),
                (t("2026-03-08T23:00:00Z"), 5.0),
                (t("2026-03-31T23:00:00Z"), 1.0),
            ]
        );
        // Weeks start on Monday: 2 March 2026 is a Monday.
        let week = roll_up(&pts, Rollup::Week, &tz, Aggregation::Mean);
        assert_eq!(week[0], (t("2026-02-22T23:00:00Z"), 2.0));
        assert_eq!(week[1], (t("2026-03-01T23:00:00Z"), 3.5));
        let month = roll_up(&pts, Rollup::Month, &tz, Aggregation::Last);
        assert_eq!(
            month,
            [
                (t("2026-02-28T23:00:00Z"), 5.0),
                (t("2026-03-31T23:00:00Z"), 1.0)
            ]
        );
    }

    #[test]
    fn the_chart_has_axes_in_the_zone_a_target_line_and_a_line_through_the_points() {
        let tz = chrono::FixedOffset::east_opt(2 * 3600).unwrap_or_else(|| unreachable!());
        let pts = [
            (t("2026-03-01T06:00:00Z"), 1800.0),
            (t("2026-03-01T12:00:00Z"), 9000.0),
            (t("2026-03-01T18:00:00Z"), 3600.0),
        ];
        let svg = chart(&Chart {
            name: "feedback_response_time",
            points: &pts,
            from: t("2026-03-01T00:00:00Z"),
            to: t("2026-03-02T00:00:00Z"),
            unit: "s",
            target: Some((7200.0, "< 2 hours")),
            rollup: Rollup::Raw,
            tz: &tz,
            tz_name: "Test/Zone",
        });
        assert!(svg.contains("data-points=\"3\""), "{svg}");
        assert_eq!(svg.matches("<circle class=\"point\"").count(), 3);
        let line = svg
            .split("<polyline class=\"series\" fill=\"none\" points=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default();
        assert_eq!(line.split(' ').count(), 3, "{svg}");
        assert!(svg.contains("data-target=\"7200\""), "{svg}");
        assert!(svg.contains("target &lt; 2 hours"), "{svg}");
        // Durations on the value axis, local hours (UTC+2) on the time axis.
        assert!(svg.contains(">2h 00m</text>"), "{svg}");
        assert!(svg.contains(">06:00</text>"), "{svg}");
        assert!(svg.contains(">0</text>"), "{svg}");
        assert!(svg.contains("time in Test/Zone"), "{svg}");
        assert!(svg.contains(">duration</text>"), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
        // The higher value is higher up.
        let ys: Vec<f64> = svg
            .split("cy=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next()?.parse().ok())
            .collect();
        assert!(ys[1] < ys[0] && ys[1] < ys[2], "{ys:?}");
    }

    #[test]
    fn an_empty_chart_says_so_and_ticks_stay_few() {
        let svg = chart(&Chart {
            name: "m",
            points: &[],
            from: t("2025-03-01T00:00:00Z"),
            to: t("2026-03-01T00:00:00Z"),
            unit: "",
            target: None,
            rollup: Rollup::Month,
            tz: &Utc,
            tz_name: "UTC",
        });
        assert!(svg.contains("no data yet"), "{svg}");
        let ticks = svg.matches("class=\"x-tick\"").count();
        assert!((2..=8).contains(&ticks), "{ticks}: {svg}");
        for (from, to) in [
            ("2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z"),
            ("2026-03-01T00:00:00Z", "2026-08-31T00:00:00Z"),
            ("2026-03-01T00:00:00Z", "2026-03-01T05:00:00Z"),
        ] {
            let n = time_ticks(t(from), t(to), &Utc).len();
            assert!((2..=8).contains(&n), "{from}..{to}: {n}");
        }
    }
}
