//! The deliverables page: a content calendar by day (the last N days, each
//! day's deliverables with their workflow, title and every publisher's
//! outcome), and one deliverable's page with its content shown as text. Data
//! from the publisher service (`publish.list`); everything from it is escaped.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, NaiveDate};
use concierto_core::subjects;
use concierto_proto::v1;
use serde::Deserialize;

use crate::DashboardState;
use crate::auth::Authed;
use crate::html::{self, esc, page, refusal_box, seg, when};
use crate::services::{Refusal, ask};

/// Days the calendar shows unless asked.
pub const DEFAULT_DAYS: u32 = 14;
/// Most days the calendar shows.
pub const MAX_DAYS: u32 = 90;
/// Most deliverables one calendar shows.
const MAX_SHOWN: u32 = 200;

/// `?days=N`.
#[derive(Debug, Deserialize)]
pub(crate) struct CalendarQuery {
    days: Option<u32>,
}

fn outcome_badge(o: &v1::PublishOutcome) -> String {
    let (class, word) = if o.pending {
        ("st-pending", "pending")
    } else if o.ok {
        ("on", "ok")
    } else {
        ("off", "failed")
    };
    format!(
        "<span class=\"badge {class}\" title=\"{detail}\" data-publisher=\"{name}\">{name}: {word}</span>",
        detail = esc(&o.detail),
        name = esc(&o.publisher),
    )
}

fn day_of(d: &v1::Deliverable) -> String {
    html::time(d.at.as_ref())
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "undated".into())
}

/// The calendar body: one section per day, newest first, empty days included.
pub(crate) fn calendar_html(
    records: &[v1::DeliverableRecord],
    today: NaiveDate,
    days: u32,
) -> String {
    let mut by_day: BTreeMap<String, Vec<&v1::DeliverableRecord>> = BTreeMap::new();
    for r in records {
        if let Some(d) = &r.deliverable {
            by_day.entry(day_of(d)).or_default().push(r);
        }
    }
    let mut out = String::from("<div class=\"calendar\">");
    for i in 0..i64::from(days) {
        let day = (today - Duration::days(i)).format("%Y-%m-%d").to_string();
        let items = by_day.get(&day).map(Vec::as_slice).unwrap_or(&[]);
        out.push_str(&format!(
            "<section class=\"day\" data-day=\"{day}\"><h2>{day}</h2>"
        ));
        if items.is_empty() {
            out.push_str("<p class=\"muted\">Nothing published.</p>");
        } else {
            out.push_str("<ul>");
            for r in items {
                let Some(d) = &r.deliverable else { continue };
                let badges: String = r.outcomes.iter().map(outcome_badge).collect();
                out.push_str(&format!(
                    "<li data-deliverable=\"{id}\"><a href=\"/deliverables/{link}\">{title}</a> \
<span class=\"muted\">{workflow} · {step}</span> {badges}</li>",
                    id = esc(&d.id),
                    link = seg(&d.id),
                    title = esc(&d.title),
                    workflow = esc(&d.workflow),
                    step = esc(&d.step_id),
                ));
            }
            out.push_str("</ul>");
        }
        out.push_str("</section>");
    }
    out.push_str("</div>");
    out
}

/// `GET /deliverables?days=N`: the content calendar.
pub(crate) async fn calendar(
    State(state): State<DashboardState>,
    who: Authed,
    Query(q): Query<CalendarQuery>,
) -> Response {
    let days = q.days.unwrap_or(DEFAULT_DAYS).clamp(1, MAX_DAYS);
    let today = state.now().date_naive();
    let from = today - Duration::days(i64::from(days) - 1);
    let listed: Result<v1::ListDeliverablesResponse, Refusal> = ask(
        &state,
        "publisher",
        subjects::PUBLISH_LIST,
        &v1::ListDeliverablesRequest {
            from_day: from.format("%Y-%m-%d").to_string(),
            to_day: today.format("%Y-%m-%d").to_string(),
            page_size: MAX_SHOWN,
            ..Default::default()
        },
        None,
    )
    .await;
    let (status, inner) = match listed {
        Ok(l) => {
            let more = if l.next_page_token.is_empty() {
                String::new()
            } else {
                format!(
                    "<p class=\"muted\">Showing the newest {MAX_SHOWN}; ask fewer days to see the rest.</p>"
                )
            };
            (
                StatusCode::OK,
                format!("{more}{}", calendar_html(&l.deliverables, today, days)),
            )
        }
        Err(r) => (r.status, refusal_box(&r)),
    };
    let links: String = [7u32, 14, 30, 90]
        .iter()
        .map(|n| format!("<a href=\"/deliverables?days={n}\">{n} days</a> "))
        .collect();
    let body = format!(
        "<p class=\"muted\">What succeeded runs made, by day: the last {days} days. {links}</p>\
<section id=\"deliverables\">{inner}</section>"
    );
    page(&state, &who, status, "Deliverables", "/deliverables", &body)
}

/// One deliverable's page body.
pub(crate) fn deliverable_html(r: &v1::DeliverableRecord) -> String {
    let Some(d) = &r.deliverable else {
        return String::new();
    };
    let mut params: Vec<(&String, &String)> = d.params.iter().collect();
    params.sort();
    let params: String = params
        .iter()
        .map(|(k, v)| format!("<li><code>{}</code> = {}</li>", esc(k), esc(v)))
        .collect();
    let outcomes: String = r
        .outcomes
        .iter()
        .map(|o| {
            format!(
                "<tr><td>{name}</td><td>{kind}</td><td>{badge}</td><td>{attempts}</td><td>{at}</td><td>{detail}</td></tr>",
                name = esc(&o.publisher),
                kind = esc(&o.kind),
                badge = outcome_badge(o),
                attempts = o.attempts,
                at = when(o.at.as_ref()),
                detail = esc(&o.detail),
            )
        })
        .collect();
    format!(
        "<dl class=\"facts\"><dt>Id</dt><dd><code>{id}</code></dd>\
<dt>Run</dt><dd><a href=\"/runs/{run_link}\">{run}</a></dd>\
<dt>Workflow</dt><dd>{workflow}</dd><dt>Step</dt><dd>{step} ({role})</dd>\
<dt>Made</dt><dd>{at}</dd><dt>Labels</dt><dd>{labels}</dd></dl>\
<h2>Parameters</h2><ul>{params}</ul>\
<h2>Publishers</h2><table><thead><tr><th>Publisher</th><th>Kind</th><th>Outcome</th><th>Attempts</th>\
<th>When</th><th>Detail</th></tr></thead><tbody>{outcomes}</tbody></table>\
<h2>Content <span class=\"muted\">({ct})</span></h2><pre class=\"deliverable\">{content}</pre>",
        id = esc(&d.id),
        run_link = seg(&d.run_id),
        run = esc(&d.run_id),
        workflow = esc(&d.workflow),
        step = esc(&d.step_id),
        role = esc(&d.role),
        at = when(d.at.as_ref()),
        labels = esc(&d.labels.join(", ")),
        ct = esc(&d.content_type),
        content = esc(&d.content),
    )
}

/// `GET /deliverables/{id}`: one deliverable, its outcomes and its content.
pub(crate) async fn show(
    State(state): State<DashboardState>,
    who: Authed,
    Path(id): Path<String>,
) -> Response {
    let got: Result<v1::ListDeliverablesResponse, Refusal> = ask(
        &state,
        "publisher",
        subjects::PUBLISH_LIST,
        &v1::ListDeliverablesRequest {
            id: id.clone(),
            ..Default::default()
        },
        None,
    )
    .await;
    let (status, title, body) = match got {
        Ok(l) => match l.deliverables.first() {
            Some(r) => (
                StatusCode::OK,
                r.deliverable
                    .as_ref()
                    .map(|d| d.title.clone())
                    .unwrap_or_default(),
                deliverable_html(r),
            ),
            None => {
                let r = Refusal::new(StatusCode::NOT_FOUND, format!("no deliverable {id:?}"));
                (r.status, "Deliverable".into(), refusal_box(&r))
            }
        },
        Err(r) => (r.status, "Deliverable".into(), refusal_box(&r)),
    };
    page(&state, &who, status, &title, "/deliverables", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(title: &str, content: &str, day: u32) -> v1::DeliverableRecord {
        let at = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, day, 9, 0, 0).unwrap();
        v1::DeliverableRecord {
            deliverable: Some(v1::Deliverable {
                id: format!("run<{day}>/draft"),
                run_id: format!("run<{day}>"),
                workflow: "daily".into(),
                step_id: "draft".into(),
                title: title.into(),
                content: content.into(),
                at: Some(prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            }),
            outcomes: vec![v1::PublishOutcome {
                publisher: "cms".into(),
                ok: false,
                pending: false,
                detail: "\"><script>alert(1)</script>".into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn the_calendar_groups_by_day_newest_first_and_escapes_everything() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let html = calendar_html(
            &[
                record("<img src=x onerror=alert(1)>", "", 6),
                record("Older", "", 4),
            ],
            today,
            3,
        );
        let days: Vec<usize> = ["2026-12-06", "2026-12-05", "2026-12-04"]
            .iter()
            .map(|d| html.find(&format!("data-day=\"{d}\"")).unwrap())
            .collect();
        assert!(days.windows(2).all(|w| w[0] < w[1]), "newest first");
        assert!(html.contains("Nothing published."));
        assert!(!html.contains("<img") && !html.contains("<script"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("href=\"/deliverables/run%3C6%3E%2Fdraft\""));
        assert!(html.contains("cms: failed"));
    }

    #[test]
    fn a_deliverables_hostile_content_stays_text() {
        let html = deliverable_html(&record(
            "t",
            "</pre><script>fetch('/x')</script><a href=\"javascript:1\">",
            6,
        ));
        assert!(!html.contains("<script") && !html.contains("<a href=\"javascript"));
        assert!(html.contains("&lt;/pre&gt;&lt;script&gt;"));
        assert_eq!(html.matches("<pre").count(), 1);
    }
}
