//! The pages over the bus: agents, queue and the feedback inbox (the
//! overview is in `metrics.rs`, gates in `gates.rs`, runs in `runs.rs` and
//! `run_page.rs`, triggers in `triggers.rs`).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use concierto_core::config::Goal;
use concierto_core::grammar::Quantity;
use concierto_core::subjects;
use concierto_proto::v1;

use crate::DashboardState;
use crate::auth::Authed;
use crate::html::{self, between, esc, human, page, refusal_box, when};
use crate::services::{Refusal, ask};

/// `RUN_STATE_WAITING_GATE` → `waiting gate`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ")
}

fn proto_duration(d: Option<&prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(*d).ok())
}

async fn health(state: &DashboardState) -> Result<v1::SystemHealth, Refusal> {
    ask(
        state,
        "tracker",
        subjects::TRACKER_HEALTH,
        &v1::GetHealthRequest::default(),
        None,
    )
    .await
}

/// `GET /agents`: per role utilization, replicas, in flight, last heartbeat.
pub(crate) async fn agents(State(state): State<DashboardState>, who: Authed) -> Response {
    let now = state.now();
    let (status, inner) = match health(&state).await {
        Ok(h) if h.roles.is_empty() => (
            StatusCode::OK,
            "<p class=\"muted\">No agent has sent a heartbeat yet.</p>".to_string(),
        ),
        Ok(h) => {
            let rows: String = h
                .roles
                .iter()
                .map(|r| {
                    let pct = (r.utilization.clamp(0.0, 1.0) * 100.0).round();
                    let age = html::time(r.last_heartbeat.as_ref())
                        .map(|t| format!("{} ago", human(between(t, now))))
                        .unwrap_or_else(|| "never".into());
                    format!(
                        "<tr data-role=\"{role}\"><td>{role}</td>\
<td><span class=\"bar\" title=\"{pct}%\"><svg viewBox=\"0 0 100 1\" preserveAspectRatio=\"none\" aria-hidden=\"true\"><rect width=\"{pct}\" height=\"1\"/></svg></span> {pct}%</td>\
<td class=\"num\">{replicas}</td><td class=\"num\">{in_flight}</td><td>{age}</td>\
<td class=\"num\">{done}</td><td class=\"num\">{failed}</td></tr>",
                        role = esc(&r.role),
                        replicas = r.replicas,
                        in_flight = r.in_flight,
                        done = r.tasks_done,
                        failed = r.tasks_failed,
                    )
                })
                .collect();
            (
                StatusCode::OK,
                format!(
                    "<table><thead><tr><th>Role</th><th>Utilization</th><th>Replicas</th><th>In flight</th>\
<th>Last heartbeat</th><th>Done</th><th>Failed</th></tr></thead><tbody>{rows}</tbody></table>"
                ),
            )
        }
        Err(r) => (r.status, refusal_box(&r)),
    };
    let spend = crate::spend::section(&state).await;
    let body = format!("<section id=\"agents\" data-live=\"heartbeat\">{inner}</section>{spend}");
    page(&state, &who, status, "Agents", "/agents", &body)
}

/// `GET /queue`: depth and oldest age per priority; dead letters; gates.
pub(crate) async fn queue(State(state): State<DashboardState>, who: Authed) -> Response {
    let (status, inner) = match health(&state).await {
        Ok(h) => {
            let rows: String = h
                .queues
                .iter()
                .map(|q| {
                    format!(
                        "<tr data-priority=\"{p}\"><td>{p}</td><td class=\"num\">{depth}</td><td>{age}</td></tr>",
                        p = esc(&q.priority),
                        depth = q.depth,
                        age = proto_duration(q.oldest_age.as_ref())
                            .filter(|_| q.depth > 0)
                            .map(human)
                            .unwrap_or_else(|| "–".into()),
                    )
                })
                .collect();
            (
                StatusCode::OK,
                format!(
                    "<table><thead><tr><th>Priority</th><th>Depth</th><th>Oldest</th></tr></thead><tbody>{rows}</tbody></table>\
<dl class=\"stats\"><dt>Dead letters</dt><dd id=\"dead-letters\">{}</dd>\
<dt>Gates open</dt><dd id=\"gates-open\">{}</dd><dt>Gates overdue</dt><dd id=\"gates-overdue\" class=\"{}\">{}</dd></dl>",
                    h.dead_letters,
                    h.gates_open,
                    if h.gates_overdue > 0 { "warn" } else { "" },
                    h.gates_overdue
                ),
            )
        }
        Err(r) => (r.status, refusal_box(&r)),
    };
    let body = format!("<section id=\"queue\" data-live=\"run gate\">{inner}</section>");
    page(&state, &who, status, "Queue", "/queue", &body)
}

/// The `feedback_response_time` target when it is a duration (as the orchestrator reads it).
fn response_sla(state: &DashboardState) -> Option<Duration> {
    state
        .studio()
        .progress_metrics
        .iter()
        .find(|m| m.name == "feedback_response_time")
        .and_then(|m| match &m.goal {
            Goal::Target(t) => match t.value {
                Quantity::Duration(d) => Some(d),
                Quantity::Number(_) => None,
            },
            Goal::Improvement(_) => None,
        })
}

/// `GET /feedback`: the inbox with routing and first-response time vs the SLA.
pub(crate) async fn feedback(State(state): State<DashboardState>, who: Authed) -> Response {
    let sla = response_sla(&state);
    let now = state.now();
    let listed: Result<v1::ListFeedbackResponse, Refusal> = ask(
        &state,
        "feedback service",
        subjects::FEEDBACK_LIST,
        &v1::ListFeedbackRequest {
            page_size: 100,
            ..Default::default()
        },
        None,
    )
    .await;
    let (status, inner) = match listed {
        Ok(l) if l.entries.is_empty() => (
            StatusCode::OK,
            "<p class=\"muted\">No feedback yet.</p>".to_string(),
        ),
        Ok(l) => {
            let rows: String = l
                .entries
                .iter()
                .map(|e| {
                    let f = e.feedback.clone().unwrap_or_default();
                    let received = html::time(f.received_at.as_ref());
                    let responded = html::time(e.first_response_at.as_ref());
                    let (took, within) = match (received, responded) {
                        (Some(a), Some(b)) => {
                            let d = between(a, b);
                            (human(d), sla.map(|s| d <= s))
                        }
                        (Some(a), None) => {
                            let d = between(a, now);
                            (
                                format!("waiting {}", human(d)),
                                sla.and_then(|s| (d > s).then_some(false)),
                            )
                        }
                        _ => ("–".into(), None),
                    };
                    let verdict = match within {
                        Some(true) => "<span class=\"badge on\">within SLA</span>",
                        Some(false) => "<span class=\"badge off\">over SLA</span>",
                        None => "",
                    };
                    let (category, roles) = e
                        .routed
                        .as_ref()
                        .map(|r| {
                            (
                                short(r.category().as_str_name(), "FEEDBACK_CATEGORY_"),
                                r.roles.join(", "),
                            )
                        })
                        .unwrap_or_else(|| ("not yet".into(), String::new()));
                    let text: String = f.text.chars().take(240).collect();
                    format!(
                        "<tr data-feedback=\"{id}\"><td>{received}</td><td>{channel}</td><td>{author}</td>\
<td>{text}</td><td>{category}</td><td>{roles}</td><td>{took} {verdict}</td></tr>",
                        id = esc(&f.feedback_id),
                        received = when(f.received_at.as_ref()),
                        channel = esc(&short(f.channel().as_str_name(), "FEEDBACK_CHANNEL_")),
                        author = esc(&f.author),
                        text = esc(&text),
                        category = esc(&category),
                        roles = esc(&roles),
                    )
                })
                .collect();
            (
                StatusCode::OK,
                format!(
                    "<table><thead><tr><th>Received</th><th>Channel</th><th>From</th><th>Text</th><th>Category</th>\
<th>Routed to</th><th>First response</th></tr></thead><tbody>{rows}</tbody></table>"
                ),
            )
        }
        Err(r) => (r.status, refusal_box(&r)),
    };
    let sla_text = sla
        .map(|s| format!("First-response SLA: {}.", human(s)))
        .unwrap_or_else(|| "No feedback_response_time SLA in the studio.".into());
    let body = format!(
        "<p class=\"muted\">{sla_text}</p><section id=\"feedback\" data-live=\"run\">{inner}</section>"
    );
    page(&state, &who, status, "Feedback", "/feedback", &body)
}
