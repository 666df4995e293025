//! HTML pieces: escaping, the page frame, times and durations, and the inline
//! SVG charts. The style and the script are embedded files.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use prost_types::Timestamp;

use crate::DashboardState;
use crate::auth::Authed;
use crate::services::Refusal;

const CSS: &str = include_str!("../assets/dashboard.css");
const JS: &str = include_str!("../assets/dashboard.js");

/// `GET /assets/dashboard.css`.
pub(crate) async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
}

/// `GET /assets/dashboard.js`.
pub(crate) async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
}

/// Text made safe for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    concierto_content::escape_html(s)
}

/// A path segment made safe for a URL (`/runs/{id}`).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A whole HTML document.
pub(crate) fn document(title: &str, studio: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · {studio}</title>\
<link rel=\"stylesheet\" href=\"/assets/dashboard.css\"></head>\
<body>{body}<script src=\"/assets/dashboard.js\" defer></script></body></html>\n",
        title = esc(title),
        studio = esc(studio),
    )
}

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/agents", "Agents"),
    ("/queue", "Queue"),
    ("/runs", "Runs"),
    ("/triggers", "Triggers"),
    ("/gates", "Gates"),
    ("/feedback", "Feedback"),
    ("/library", "Library"),
    ("/deliverables", "Deliverables"),
    ("/dead-letters", "Dead letters"),
];

/// A signed-in page: navigation, the reviewer, sign-out, then `body`.
pub(crate) fn page(
    state: &DashboardState,
    who: &Authed,
    status: StatusCode,
    title: &str,
    active: &str,
    body: &str,
) -> Response {
    let nav: String = NAV
        .iter()
        .map(|(href, name)| {
            let current = if *href == active {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{href}\"{current}>{name}</a>")
        })
        .collect();
    let frame = format!(
        "<header class=\"top\"><span class=\"brand\">{studio}</span><nav>{nav}</nav>\
<span class=\"who\" id=\"who\" data-reviewer=\"{id}\">{name}</span>\
<form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\">Sign out</button></form>\
<span class=\"live-dot\" id=\"live\" title=\"live updates\"></span></header>\
<meta name=\"csrf-token\" content=\"{csrf}\">\
<main><h1>{title}</h1>{body}</main>",
        studio = esc(&state.studio().studio.name),
        id = esc(&who.identity.id),
        name = esc(&who.identity.name),
        csrf = esc(&who.csrf),
        title = esc(title),
    );
    let doc = document(title, &state.studio().studio.name, &frame);
    let mut resp = (status, Html(doc)).into_response();
    if let Some(c) = who.csrf_cookie(state) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A box saying why a part of a page has no data.
pub(crate) fn refusal_box(r: &Refusal) -> String {
    format!(
        "<p class=\"unavailable\" role=\"alert\" data-status=\"{}\">{}</p>",
        r.status.as_u16(),
        esc(&sentence(&r.message))
    )
}

/// The first letter capitalised and a full stop, for a message shown alone.
fn sentence(s: &str) -> String {
    let mut c = s.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => return String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// A protobuf time as a `DateTime`.
pub(crate) fn time(ts: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32))
}

/// `<time>` of a protobuf time, or a dash.
pub(crate) fn when(ts: Option<&Timestamp>) -> String {
    match time(ts) {
        Some(t) => format!(
            "<time datetime=\"{}\">{}</time>",
            t.to_rfc3339_opts(SecondsFormat::Secs, true),
            t.format("%Y-%m-%d %H:%M:%S")
        ),
        None => "–".into(),
    }
}

/// `<time>` of a protobuf time in the studio's zone `tz`, its abbreviation
/// shown (`2026-03-10 09:00:00 CET`) and its name in the title; or a dash.
pub(crate) fn when_in(ts: Option<&Timestamp>, tz: chrono_tz::Tz) -> String {
    match time(ts) {
        Some(t) => {
            let local = t.with_timezone(&tz);
            format!(
                "<time datetime=\"{}\" title=\"{}\">{}</time>",
                t.to_rfc3339_opts(SecondsFormat::Secs, true),
                esc(tz.name()),
                esc(&local.format("%Y-%m-%d %H:%M:%S %Z").to_string())
            )
        }
        None => "–".into(),
    }
}

/// `3h 12m`, `4m 05s`, `12s`, `850ms`.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        (h, _) if h >= 48 => format!("{}d {}h", h / 24, h % 24),
        _ => format!("{h}h {m:02}m"),
    }
}

/// The time from `a` to `b` (zero when `b` is earlier).
pub(crate) fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> Duration {
    (b - a).to_std().unwrap_or_default()
}

/// A number shown short: integers plain, others with up to 3 decimals.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// An inline SVG line chart of `(unix seconds, value)` points, `w`×`h` pixels.
pub(crate) fn sparkline(points: &[(i64, f64)], w: u32, h: u32) -> String {
    let pts: Vec<(i64, f64)> = points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    if pts.is_empty() {
        return format!(
            "<svg class=\"chart\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"no data yet\"><text x=\"4\" y=\"{}\">no data yet</text></svg>",
            h / 2 + 4
        );
    }
    let (t0, t1) = pts.iter().fold((i64::MAX, i64::MIN), |(a, b), (t, _)| {
        (a.min(*t), b.max(*t))
    });
    let (v0, v1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, v)| {
        (a.min(*v), b.max(*v))
    });
    let (fw, fh) = (f64::from(w) - 4.0, f64::from(h) - 4.0);
    let x = |t: i64| {
        if t1 == t0 {
            fw / 2.0 + 2.0
        } else {
            2.0 + (t - t0) as f64 / (t1 - t0) as f64 * fw
        }
    };
    let y = |v: f64| {
        if v1 == v0 {
            fh / 2.0 + 2.0
        } else {
            2.0 + (1.0 - (v - v0) / (v1 - v0)) * fh
        }
    };
    let line: Vec<String> = pts
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let last = pts[pts.len() - 1];
    format!(
        "<svg class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{n} points from {lo} to {hi}\">\
<polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{}\"/>\
<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"/></svg>",
        line.join(" "),
        x(last.0),
        y(last.1),
        n = pts.len(),
        lo = num(v0),
        hi = num(v1),
    )
}

/// A step's tool calls as a folded list (name, arguments, answer size, time,
/// error), every text escaped; empty when it made none.
pub(crate) fn tool_calls(calls: &[concierto_proto::v1::ToolCall]) -> String {
    if calls.is_empty() {
        return String::new();
    }
    let items: String = calls
        .iter()
        .map(|c| {
            let error = if c.error.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"error\">{}</span>", esc(&c.error))
            };
            format!(
                "<li><code>{}</code> <span class=\"muted\">{}</span> · {} B · {} ms{error}</li>",
                esc(&c.name),
                esc(&c.arguments),
                c.answer_bytes,
                c.latency_ms
            )
        })
        .collect();
    format!(
        "<details class=\"tools\"><summary>{} tool call{}</summary><ul>{items}</ul></details>",
        calls.len(),
        if calls.len() == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_segments_encoded() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            seg("manual:w@2026-01-01T00:00:00Z/x y"),
            "manual%3Aw%402026-01-01T00%3A00%3A00Z%2Fx%20y"
        );
    }

    #[test]
    fn durations_and_numbers_read_short() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(245)), "4m 05s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 12 * 60)), "3h 12m");
        assert_eq!(human(Duration::from_secs(50 * 3600)), "2d 2h");
        assert_eq!(num(10.0), "10");
        assert_eq!(num(0.0512), "0.051");
        assert_eq!(num(f64::NAN), "–");
    }

    #[test]
    fn a_series_draws_one_point_per_value_and_empty_says_so() {
        let svg = sparkline(&[(0, 1.0), (60, 3.0), (120, 2.0)], 120, 30);
        assert!(svg.contains("3 points from 1 to 3"), "{svg}");
        let coords = svg.split("points=\"").nth(1).unwrap_or_default();
        let coords = coords.split('"').next().unwrap_or_default();
        assert_eq!(coords.split(' ').count(), 3);
        // The highest value is at the top, the first point at the left.
        assert!(coords.starts_with("2.0,"), "{coords}");
        assert!(coords.contains(",2.0 "), "{coords}");
        assert!(sparkline(&[], 120, 30).contains("no data yet"));
    }
}
