//! Quality gates: the list (open ones with their SLA countdown, then decided
//! ones) and one gate's page with its draft and, for the people who may
//! decide it, the decision buttons.
//!
//! ```text
//!  GET /gates/{id}          id: a gate id, a unique prefix of one, or a run id
//!     ─▶ orchestrator.gates.get (which resolves it) ─▶ 303 to /gates/{gate_id} when not canonical
//!     ─▶ the page: Approve / Reject / Request changes when the reviewer may decide,
//!        else who may
//!  POST /gates/{id}/decide  CSRF-checked; orchestrator.gates.decide as the reviewer
//!     ─▶ 303 to the gate's page, or the page with the orchestrator's refusal
//! ```
//!
//! Who may decide is the orchestrator's rule, mirrored for the buttons only:
//! the gate's reviewers, and once it is escalated its escalation contacts
//! (`escalate_to`, else the reviewers' `escalation`). The orchestrator still
//! checks every decision.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use chrono::SecondsFormat;
use concierto_core::config::Studio;
use concierto_core::subjects;
use concierto_proto::v1;
use serde::Deserialize;

use crate::DashboardState;
use crate::auth::{Authed, check_csrf};
use crate::html::{self, esc, page, refusal_box, seg, when_in};
use crate::services::{Refusal, ask};

/// `GATE_STATE_CHANGES_REQUESTED` → `changes requested`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ")
}

fn gate_state(s: v1::GateState) -> String {
    short(s.as_str_name(), "GATE_STATE_")
}

fn badge(text: &str) -> String {
    format!(
        "<span class=\"badge st-{}\">{}</span>",
        esc(&text.replace(' ', "-")),
        esc(text)
    )
}

/// Who may decide `g` now: its reviewers, and once escalated its escalation
/// contacts (as the orchestrator decides).
pub(crate) fn deciders(g: &v1::Gate, studio: &Studio) -> Vec<String> {
    let r = g.request.clone().unwrap_or_default();
    let mut out = r.reviewers.clone();
    if g.escalated {
        let configured = studio
            .feedback_loops
            .quality_gates
            .iter()
            .find(|q| q.name == r.gate)
            .map(|q| q.escalate_to.clone())
            .unwrap_or_default();
        let contacts = if configured.is_empty() {
            r.reviewers
                .iter()
                .filter_map(|id| studio.reviewers.get(id))
                .flat_map(|rv| rv.escalation.iter().cloned())
                .collect()
        } else {
            configured
        };
        for c in contacts {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

fn countdown(due: Option<&prost_types::Timestamp>, tz: chrono_tz::Tz) -> String {
    match html::time(due) {
        Some(t) => format!(
            "<span class=\"countdown\" data-due=\"{}\">due {}</span>",
            t.to_rfc3339_opts(SecondsFormat::Millis, true),
            esc(&t
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string())
        ),
        None => "<span class=\"muted\">no SLA</span>".into(),
    }
}

fn gate_card(g: &v1::Gate, me: &str, studio: &Studio) -> String {
    let r = g.request.clone().unwrap_or_default();
    let mine = if deciders(g, studio).iter().any(|x| x == me) {
        " <span class=\"badge on\">yours</span>"
    } else {
        ""
    };
    let status = if g.state() == v1::GateState::Open {
        countdown(r.due_at.as_ref(), studio.studio.timezone)
    } else {
        let d = g.decisions.last();
        format!(
            "{} {}",
            badge(&gate_state(g.state())),
            d.map(|d| format!("by {}", esc(&d.reviewer)))
                .unwrap_or_default()
        )
    };
    format!(
        "<article class=\"gate\" data-gate=\"{gid}\"><h3><a class=\"gate-link\" href=\"/gates/{link}\">{gate}</a>{mine}</h3>\
<p class=\"gate-meta\">Run <a href=\"/runs/{run_link}\">{run}</a> · step {step} · reviewers {reviewers}</p><p>{status}</p><p class=\"summary\">{summary}</p></article>",
        gid = esc(&r.gate_id),
        link = seg(&r.gate_id),
        gate = esc(&r.gate),
        run_link = seg(&r.run_id),
        run = esc(&r.run_id),
        step = esc(&r.step_id),
        reviewers = esc(&r.reviewers.join(", ")),
        summary = esc(&r.summary),
    )
}

/// `GET /gates`: open gates with their SLA countdown, then decided ones.
pub(crate) async fn gates(State(state): State<DashboardState>, who: Authed) -> Response {
    let studio = state.studio();
    let listed: Result<v1::ListGatesResponse, Refusal> = ask(
        &state,
        "orchestrator",
        subjects::ORCHESTRATOR_LIST_GATES,
        &v1::ListGatesRequest {
            page_size: 100,
            ..Default::default()
        },
        None,
    )
    .await;
    let (status, inner) = match listed {
        Ok(l) => {
            let (open, closed): (Vec<_>, Vec<_>) = l
                .gates
                .iter()
                .partition(|g| g.state() == v1::GateState::Open);
            let open_html: String = if open.is_empty() {
                "<p class=\"muted\" id=\"no-open-gates\">No gate is open.</p>".into()
            } else {
                open.iter()
                    .map(|g| gate_card(g, &who.identity.id, &studio))
                    .collect()
            };
            let closed_html: String = closed
                .iter()
                .take(20)
                .map(|g| gate_card(g, &who.identity.id, &studio))
                .collect();
            (
                StatusCode::OK,
                format!(
                    "<h2>Open</h2><div id=\"open-gates\">{open_html}</div><h2>Decided</h2><div id=\"decided-gates\">{closed_html}</div>"
                ),
            )
        }
        Err(r) => (r.status, refusal_box(&r)),
    };
    let body = format!("<section id=\"gates\" data-live=\"gate\">{inner}</section>");
    page(&state, &who, status, "Gates", "/gates", &body)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GateQuery {
    decided: String,
}

/// The decision form for someone who may decide, else who may.
fn decision_part(g: &v1::Gate, who: &Authed, studio: &Studio) -> String {
    if g.state() != v1::GateState::Open {
        return String::new();
    }
    let r = g.request.clone().unwrap_or_default();
    let may = deciders(g, studio);
    if !may.contains(&who.identity.id) {
        let names: Vec<String> = may
            .iter()
            .map(|id| {
                studio
                    .reviewers
                    .get(id)
                    .filter(|rv| !rv.name.is_empty())
                    .map(|rv| format!("{} ({id})", rv.name))
                    .unwrap_or_else(|| id.clone())
            })
            .collect();
        return format!(
            "<p class=\"notice\" id=\"deciders\" data-deciders=\"{ids}\">Only {names} may decide this gate; you can read it.</p>",
            ids = esc(&may.join(" ")),
            names = esc(&if names.is_empty() {
                "its reviewers".to_string()
            } else {
                names.join(", ")
            }),
        );
    }
    format!(
        "<form method=\"post\" action=\"/gates/{link}/decide\" id=\"decide\" class=\"decide\" data-gate-decide=\"{gid}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>Notes <textarea name=\"notes\" rows=\"3\" placeholder=\"What to change, or why\"></textarea></label>\
<div class=\"buttons\"><button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\" class=\"approve\" data-decision=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"reject\" id=\"reject\" class=\"reject\" data-decision=\"reject\">Reject</button>\
<button type=\"submit\" name=\"decision\" value=\"request_changes\" id=\"request-changes\" data-decision=\"request_changes\">Request changes</button></div></form>",
        link = seg(&r.gate_id),
        gid = esc(&r.gate_id),
        csrf = esc(&who.csrf),
    )
}

/// The gate `id` names (an id, a unique prefix or a run id: the orchestrator
/// resolves it), or the page saying why not.
async fn fetch_gate(state: &DashboardState, who: &Authed, id: &str) -> Result<v1::Gate, Response> {
    let got: Result<v1::GetGateResponse, Refusal> = ask(
        state,
        "orchestrator",
        subjects::ORCHESTRATOR_GET_GATE,
        &v1::GetGateRequest {
            gate_id: id.to_string(),
        },
        None,
    )
    .await;
    match got {
        Ok(v1::GetGateResponse { gate: Some(g) }) => Ok(g),
        Ok(_) => {
            let r = Refusal::new(StatusCode::NOT_FOUND, format!("no gate {id:?}"));
            Err(page(
                state,
                who,
                r.status,
                "Gate",
                "/gates",
                &refusal_box(&r),
            ))
        }
        Err(r) => Err(page(
            state,
            who,
            r.status,
            "Gate",
            "/gates",
            &refusal_box(&r),
        )),
    }
}

fn render_gate(
    state: &DashboardState,
    who: &Authed,
    gate: &v1::Gate,
    notice: Option<(StatusCode, String, bool)>,
) -> Response {
    let studio = state.studio();
    let tz = studio.studio.timezone;
    let r = gate.request.clone().unwrap_or_default();
    let (status, notice) = match notice {
        Some((s, msg, true)) => (
            s,
            format!(
                "<p class=\"error\" role=\"alert\" id=\"refusal\">Refused: {}</p>",
                esc(&msg)
            ),
        ),
        Some((s, msg, false)) => (
            s,
            format!("<p class=\"notice\" id=\"decided\">{}</p>", esc(&msg)),
        ),
        None => (StatusCode::OK, String::new()),
    };
    let decisions: String = gate
        .decisions
        .iter()
        .map(|d| {
            format!(
                "<li>{} <strong>{}</strong> {}{} {}</li>",
                when_in(d.decided_at.as_ref(), tz),
                esc(&d.reviewer),
                esc(&short(d.decision().as_str_name(), "GATE_DECISION_KIND_")),
                if d.automatic { " (automatic)" } else { "" },
                if d.notes.is_empty() {
                    String::new()
                } else {
                    format!("— {}", esc(&d.notes))
                }
            )
        })
        .collect();
    let body = format!(
        "<section id=\"gate-live\" class=\"gate-page\" data-live=\"gate\" data-gate=\"{gid}\">{notice}\
<dl class=\"stats\"><dt>Gate</dt><dd>{gate}</dd><dt>State</dt><dd id=\"gate-state\" data-state=\"{state}\">{state_badge}</dd>\
<dt>Run</dt><dd><a href=\"/runs/{run_link}\" id=\"gate-run\">{run}</a></dd><dt>Step</dt><dd>{step}</dd><dt>Label</dt><dd>{label}</dd>\
<dt>Reviewers</dt><dd id=\"gate-reviewers\">{reviewers}</dd><dt>Round</dt><dd>{round}</dd><dt>Opened</dt><dd>{opened}</dd><dt>SLA</dt><dd>{due}</dd></dl>\
<p class=\"summary\">{summary}</p><h2>Draft</h2><pre class=\"draft\" id=\"draft\">{content}</pre>\
{form}<h2>Decisions</h2><ul class=\"decisions\">{decisions}</ul></section>",
        gid = esc(&r.gate_id),
        gate = esc(&r.gate),
        state = esc(&gate_state(gate.state())),
        state_badge = badge(&gate_state(gate.state())),
        run_link = seg(&r.run_id),
        run = esc(&r.run_id),
        step = esc(&r.step_id),
        label = esc(&r.label),
        reviewers = esc(&r.reviewers.join(", ")),
        round = r.round,
        opened = when_in(r.opened_at.as_ref(), tz),
        due = if gate.state() == v1::GateState::Open {
            countdown(r.due_at.as_ref(), tz)
        } else {
            when_in(r.due_at.as_ref(), tz)
        },
        summary = esc(&r.summary),
        content = esc(&r.content),
        form = decision_part(gate, who, &studio),
    );
    page(
        state,
        who,
        status,
        &format!("Gate {}", r.gate),
        "/gates",
        &body,
    )
}

/// The canonical address of a gate.
fn gate_path(gate_id: &str) -> String {
    format!("/gates/{}", seg(gate_id))
}

/// `GET /gates/{id}`: the gate, its draft, and the decision buttons for the
/// people who may decide it. A prefix or a run id redirects to the gate.
pub(crate) async fn gate(
    State(state): State<DashboardState>,
    who: Authed,
    Path(id): Path<String>,
    Query(q): Query<GateQuery>,
) -> Response {
    let g = match fetch_gate(&state, &who, &id).await {
        Ok(g) => g,
        Err(resp) => return resp,
    };
    let canonical = g
        .request
        .as_ref()
        .map(|r| r.gate_id.clone())
        .unwrap_or_default();
    if !canonical.is_empty() && canonical != id {
        return Redirect::to(&gate_path(&canonical)).into_response();
    }
    let decided = match q.decided.as_str() {
        "approve" | "reject" | "request_changes" => Some(q.decided.replace('_', " ")),
        _ => None,
    };
    let notice = decided.map(|d| {
        (
            StatusCode::OK,
            format!("Your decision was recorded: {d}."),
            false,
        )
    });
    render_gate(&state, &who, &g, notice)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DecideForm {
    csrf: String,
    decision: String,
    notes: String,
}

/// The gate's page with a refusal (or the page saying the gate is gone).
async fn refused(state: &DashboardState, who: &Authed, id: &str, r: Refusal) -> Response {
    match fetch_gate(state, who, id).await {
        Ok(g) => render_gate(state, who, &g, Some((r.status, r.message, true))),
        Err(resp) => resp,
    }
}

/// `POST /gates/{id}/decide`: the orchestrator decides whether this reviewer
/// may; a refusal is shown on the gate's page with its status.
pub(crate) async fn decide(
    State(state): State<DashboardState>,
    who: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: DecideForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("not a form post: {e}")).into_response();
        }
    };
    if let Err(r) = check_csrf(&state, &headers, Some(&form.csrf)) {
        return r.into_response();
    }
    let kind = match form.decision.as_str() {
        "approve" => v1::GateDecisionKind::Approve,
        "reject" => v1::GateDecisionKind::Reject,
        "request_changes" => v1::GateDecisionKind::RequestChanges,
        other => {
            let other: String = other.chars().take(40).collect();
            let msg = format!("unknown decision {other:?}: approve, reject or request_changes");
            return refused(
                &state,
                &who,
                &id,
                Refusal::new(StatusCode::BAD_REQUEST, msg),
            )
            .await;
        }
    };
    let decided: Result<v1::DecideGateResponse, Refusal> = ask(
        &state,
        "orchestrator",
        subjects::ORCHESTRATOR_DECIDE_GATE,
        &v1::DecideGateRequest {
            gate_id: id.clone(),
            decision: kind as i32,
            notes: form.notes.trim().chars().take(4000).collect(),
        },
        Some(&who.identity.id),
    )
    .await;
    match decided {
        Ok(r) => {
            let canonical = r
                .gate
                .and_then(|g| g.request)
                .map(|r| r.gate_id)
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| id.clone());
            tracing::info!(gate = %canonical, reviewer = %who.identity.id, decision = %form.decision, "gate decided on the dashboard");
            Redirect::to(&format!(
                "{}?decided={}",
                gate_path(&canonical),
                form.decision
            ))
            .into_response()
        }
        Err(r) => refused(&state, &who, &id, r).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_states_read_as_words() {
        assert_eq!(
            gate_state(v1::GateState::ChangesRequested),
            "changes requested"
        );
        assert_eq!(gate_path("r/s/g/1"), "/gates/r%2Fs%2Fg%2F1");
    }
}
