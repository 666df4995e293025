//! One run's page (`GET /runs/{id}`): its facts, a step timeline, the steps
//! table, and per step its inputs and output as sanitised Markdown
//! ([`crate::markdown`]), its tool calls and its review; for admins, Cancel
//! (a live run, `orchestrator.runs.cancel`) and Retry from the failed step
//! or from the start (an ended failed or cancelled run,
//! `orchestrator.runs.retry` with the reviewer's id in the identity header).
//!
//! `{id}` may be a unique prefix: the orchestrator resolves it and the page
//! redirects to the run's full id. A run just started (`?started=1`) that
//! the orchestrator does not know yet is shown as on its way, and the page
//! fills in when its first event arrives.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use concierto_core::subjects;
use concierto_proto::v1;
use serde::Deserialize;

use crate::DashboardState;
use crate::actions::{WithCsrf, admin_form, csrf_field};
use crate::auth::Authed;
use crate::html::{self, between, esc, human, num, page, refusal_box, seg};
use crate::markdown;
use crate::runs::{badge, ended, gate_state, run_state, run_times, step_state};
use crate::services::{Refusal, ask};

/// Most tool calls listed per step (the rest are counted).
const MAX_TOOL_CALLS: usize = 200;

/// One bar of the timeline.
struct Bar {
    label: String,
    detail: String,
    class: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn step_bar(s: &v1::RunStep, now: DateTime<Utc>) -> Option<Bar> {
    let start = html::time(s.started_at.as_ref())?;
    let state = step_state(s.state());
    let end = html::time(s.finished_at.as_ref()).unwrap_or(match s.state() {
        v1::StepState::Succeeded | v1::StepState::Failed | v1::StepState::Cancelled => start,
        _ => now,
    });
    let mut detail = format!("{} · {} · attempt {}", s.role, state, s.attempt.max(1));
    if s.review_rounds > 0 {
        detail.push_str(&format!(" · {} review rounds", s.review_rounds));
    }
    if let Some(v) = &s.verdict {
        detail.push_str(&format!(
            " · score {} ({})",
            num(v.score),
            if v.pass { "pass" } else { "fail" }
        ));
    }
    Some(Bar {
        label: s.step_id.clone(),
        detail,
        class: format!("st-{}", state.replace(' ', "-")),
        start,
        end: end.max(start),
    })
}

fn gate_bar(g: &v1::Gate, now: DateTime<Utc>) -> Option<Bar> {
    let r = g.request.as_ref()?;
    let start = html::time(r.opened_at.as_ref())?;
    let decided = g.decisions.last();
    let end = match g.state() {
        v1::GateState::Open => now,
        _ => decided
            .and_then(|d| html::time(d.decided_at.as_ref()))
            .unwrap_or(now),
    };
    let state = gate_state(g.state());
    let by = decided
        .map(|d| format!(" by {}", d.reviewer))
        .unwrap_or_default();
    Some(Bar {
        label: format!("gate {}", r.gate),
        detail: format!(
            "waiting for {} · {state}{by} · waited {}",
            r.reviewers.join(", "),
            human(between(start, end))
        ),
        class: "gate".into(),
        start,
        end: end.max(start),
    })
}

/// The SVG timeline: one row per step and per gate wait, along time; its
/// start in the studio's zone `tz`.
fn timeline(run: &v1::Run, gates: &[v1::Gate], now: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    let mut bars: Vec<Bar> = run.steps.iter().filter_map(|s| step_bar(s, now)).collect();
    bars.extend(gates.iter().filter_map(|g| gate_bar(g, now)));
    if bars.is_empty() {
        return "<p class=\"muted\">No step has started yet.</p>".into();
    }
    bars.sort_by_key(|b| b.start);
    let t0 = bars
        .iter()
        .map(|b| b.start)
        .chain(html::time(run.created_at.as_ref()))
        .min()
        .unwrap_or(now);
    let t1 = bars.iter().map(|b| b.end).max().unwrap_or(now);
    let span = (t1 - t0).num_milliseconds().max(1) as f64;
    let (label_w, chart_w, row_h) = (280.0, 620.0, 28.0);
    let x = |t: DateTime<Utc>| label_w + (t - t0).num_milliseconds() as f64 / span * chart_w;
    let height = row_h * bars.len() as f64 + 24.0;
    let rows: String = bars
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let y = i as f64 * row_h;
            let (x0, x1) = (x(b.start), x(b.end));
            format!(
                "<g class=\"row {class}\" data-step=\"{label}\"><title>{label}: {detail}</title>\
<text x=\"0\" y=\"{ty:.1}\">{label}</text>\
<rect x=\"{x0:.1}\" y=\"{ry:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"3\"/></g>",
                class = esc(&b.class),
                label = esc(&b.label),
                detail = esc(&b.detail),
                ty = y + row_h * 0.65,
                ry = y + 4.0,
                w = (x1 - x0).max(3.0),
                h = row_h - 8.0,
            )
        })
        .collect();
    format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {w} {height}\" width=\"100%\" role=\"img\" aria-label=\"step timeline\">{rows}\
<text class=\"axis\" x=\"{label_w}\" y=\"{ay}\">{start}</text>\
<text class=\"axis\" x=\"{w}\" y=\"{ay}\" text-anchor=\"end\">+{total}</text></svg>",
        w = label_w + chart_w,
        ay = height - 6.0,
        start = esc(&t0.with_timezone(&tz).format("%H:%M:%S %Z").to_string()),
        total = human(between(t0, t1)),
    )
}

/// The run step `s` of a retry was carried over from, if it was: the
/// orchestrator labels such a step `kept-from:<run>`; without the label, a
/// step of a retry that ended before the retry was created was kept too.
fn carried_over(run: &v1::Run, s: &v1::RunStep) -> Option<String> {
    if let Some(from) = s.labels.iter().find_map(|l| l.strip_prefix("kept-from:")) {
        return Some(from.to_string());
    }
    if run.retry_of.is_empty() {
        return None;
    }
    match (
        html::time(s.finished_at.as_ref()),
        html::time(run.created_at.as_ref()),
    ) {
        (Some(done), Some(created)) if done < created => Some(run.retry_of.clone()),
        _ => None,
    }
}

fn steps_table(run: &v1::Run) -> String {
    let rows: String = run
        .steps
        .iter()
        .map(|s| {
            let took = match (
                html::time(s.started_at.as_ref()),
                html::time(s.finished_at.as_ref()),
            ) {
                (Some(a), Some(b)) => human(between(a, b)),
                _ => "–".into(),
            };
            let verdict = s
                .verdict
                .as_ref()
                .map(|v| {
                    format!(
                        "{} <span class=\"muted\">{}</span>",
                        num(v.score),
                        if v.pass { "pass" } else { "fail" }
                    )
                })
                .unwrap_or_else(|| "–".into());
            let (tokens, cost) = s
                .usage
                .as_ref()
                .map(|u| {
                    (
                        format!("{} / {}", u.input_tokens, u.output_tokens),
                        if u.cost_usd > 0.0 {
                            format!("${:.4}", u.cost_usd)
                        } else {
                            "–".into()
                        },
                    )
                })
                .unwrap_or_else(|| ("–".into(), "–".into()));
            let error = if s.error.is_empty() {
                String::new()
            } else {
                format!("<div class=\"error\">{}</div>", esc(&s.error))
            };
            let carried = if carried_over(run, s).is_some() {
                " <span class=\"badge carried\">carried over</span>"
            } else {
                ""
            };
            format!(
                "<tr data-step=\"{id}\"><td><a href=\"#step-{anchor}\">{id}</a>{carried}{error}</td><td>{role}</td><td>{state}</td><td class=\"num\">{attempt}</td>\
<td class=\"num\">{rounds}</td><td>{verdict}</td><td>{took}</td><td class=\"num\">{tokens}</td><td class=\"num\">{cost}</td></tr>",
                id = esc(&s.step_id),
                anchor = seg(&s.step_id),
                role = esc(&s.role),
                state = badge(&step_state(s.state())),
                attempt = s.attempt.max(1),
                rounds = s.review_rounds,
            )
        })
        .collect();
    format!(
        "<table class=\"steps\"><thead><tr><th>Step</th><th>Role</th><th>State</th><th>Attempts</th><th>Review rounds</th>\
<th>Score</th><th>Took</th><th>Tokens in / out</th><th>Cost</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// The run's parameters: the brief as Markdown, the others as a list.
fn params_html(run: &v1::Run) -> String {
    let mut keys: Vec<&String> = run.params.keys().filter(|k| *k != "brief").collect();
    keys.sort();
    let brief = run
        .params
        .get("brief")
        .map(|b| format!("<h4>Brief</h4>{}", markdown::block(b, " data-brief")))
        .unwrap_or_default();
    let others: String = keys
        .iter()
        .map(|k| {
            format!(
                "<dt>{}</dt><dd>{}</dd>",
                esc(k),
                markdown::plain(&run.params[*k], 2000)
            )
        })
        .collect();
    let others = if others.is_empty() {
        String::new()
    } else {
        format!("<dl class=\"params\">{others}</dl>")
    };
    format!("{brief}{others}")
}

/// What a step was given: the workflow's inputs of that step, the trigger's
/// being the run's parameters and an earlier step's its output (linked).
fn inputs_html(state: &DashboardState, run: &v1::Run, step: &v1::RunStep) -> String {
    let studio = state.studio();
    let inputs: Vec<String> = studio
        .workflows
        .get(&run.workflow)
        .and_then(|w| {
            w.steps
                .iter()
                .chain(w.on_failure.iter())
                .find(|s| s.id == step.step_id)
        })
        .map(|s| s.inputs.clone())
        .unwrap_or_default();
    if inputs.is_empty() {
        return String::new();
    }
    let items: String = inputs
        .iter()
        .map(|i| {
            if i == "trigger" {
                format!(
                    "<li data-input=\"trigger\">the trigger{}</li>",
                    if run.params.is_empty() {
                        ""
                    } else {
                        " and the run's <a href=\"#run-params\">parameters</a>"
                    }
                )
            } else {
                format!(
                    "<li data-input=\"{id}\">the output of <a href=\"#step-{anchor}\">{id}</a></li>",
                    id = esc(i),
                    anchor = seg(i)
                )
            }
        })
        .collect();
    format!("<h4>Inputs</h4><ul class=\"inputs\">{items}</ul>")
}

fn review_html(s: &v1::RunStep) -> String {
    let Some(v) = &s.verdict else {
        if s.review_rounds == 0 {
            return String::new();
        }
        return format!(
            "<h4>Review</h4><p class=\"review\">{} review rounds.</p>",
            s.review_rounds
        );
    };
    let reasons: String = v
        .reasons
        .iter()
        .take(50)
        .map(|r| format!("<li>{}</li>", esc(r)))
        .collect();
    format!(
        "<h4>Review</h4><div class=\"review\" data-verdict=\"{verdict}\"><p>{rounds} review round{s} · last verdict \
<strong>{verdict}</strong> · score {score}</p>{notes}{reasons}</div>",
        rounds = s.review_rounds,
        s = if s.review_rounds == 1 { "" } else { "s" },
        verdict = if v.pass { "pass" } else { "fail" },
        score = num(v.score),
        notes = if v.notes.is_empty() {
            String::new()
        } else {
            markdown::block(&v.notes, " data-review-notes")
        },
        reasons = if reasons.is_empty() {
            String::new()
        } else {
            format!("<ul class=\"reasons\">{reasons}</ul>")
        },
    )
}

/// Per step: inputs, output, tool calls and review.
fn step_details(state: &DashboardState, run: &v1::Run) -> String {
    run.steps
        .iter()
        .map(|s| {
            let output = if s.output.is_empty() {
                "<p class=\"muted\">No output yet.</p>".to_string()
            } else {
                markdown::block(
                    &s.output,
                    &format!(" data-step-output=\"{}\"", esc(&s.step_id)),
                )
            };
            let calls = &s.tool_calls[..s.tool_calls.len().min(MAX_TOOL_CALLS)];
            let more = s.tool_calls.len() - calls.len();
            let tools = if s.tool_calls.is_empty() {
                String::new()
            } else {
                format!(
                    "<h4>Tool calls</h4>{}{}",
                    html::tool_calls(calls),
                    if more > 0 {
                        format!("<p class=\"muted\">and {more} more</p>")
                    } else {
                        String::new()
                    }
                )
            };
            let carried = carried_over(run, s)
                .map(|from| {
                    format!(
                        " <span class=\"badge carried\" data-carried-over>carried over from {}</span>",
                        esc(&from)
                    )
                })
                .unwrap_or_default();
            let error = if s.error.is_empty() {
                String::new()
            } else {
                format!("<p class=\"error\">{}</p>", esc(&s.error))
            };
            format!(
                "<article class=\"step\" id=\"step-{anchor}\" data-step-detail=\"{id}\"><h3>{id} \
<span class=\"muted\">{role}</span> {state}{carried}</h3>{error}{inputs}<h4>Output</h4>{output}{tools}{review}</article>",
                anchor = seg(&s.step_id),
                id = esc(&s.step_id),
                role = esc(&s.role),
                state = badge(&step_state(s.state())),
                inputs = inputs_html(state, run, s),
                review = review_html(s),
            )
        })
        .collect()
}

/// The admin's buttons for `run`: Cancel while it is live, Retry (from the
/// failed step, from the start) once it failed or was cancelled.
fn actions(who: &Authed, run: &v1::Run) -> String {
    if !who.identity.is_admin() {
        return String::new();
    }
    let link = seg(&run.run_id);
    let csrf = csrf_field(who);
    match run.state() {
        v1::RunState::Failed | v1::RunState::Cancelled => format!(
            "<form method=\"post\" action=\"/runs/{link}/retry\" id=\"retry-run\" class=\"actions\">{csrf}\
<button type=\"submit\" name=\"from\" value=\"failed\" id=\"retry-failed\" data-action=\"retry-failed\">Retry from the failed step</button>\
<button type=\"submit\" name=\"from\" value=\"start\" id=\"retry-start\" data-action=\"retry-start\">Retry from the start</button></form>"
        ),
        s if !ended(s) => format!(
            "<form method=\"post\" action=\"/runs/{link}/cancel\" id=\"cancel-run\" class=\"actions\">{csrf}\
<button type=\"submit\" id=\"cancel\" data-action=\"cancel\" class=\"reject\">Cancel run</button></form>"
        ),
        _ => String::new(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RunQuery {
    /// Set by the start, retry and fire redirects: the run may not be known yet.
    started: String,
}

/// The run page of `id`, with `notice` (a refusal) above it.
async fn run_page(
    state: &DashboardState,
    who: &Authed,
    id: &str,
    just_started: bool,
    notice: Option<Refusal>,
) -> Response {
    let now = state.now();
    let tz = state.studio().studio.timezone;
    let got: Result<v1::GetRunResponse, Refusal> = ask(
        state,
        "orchestrator",
        subjects::ORCHESTRATOR_GET_RUN,
        &v1::GetRunRequest {
            run_id: id.to_string(),
        },
        None,
    )
    .await;
    let run = match got {
        Ok(v1::GetRunResponse { run: Some(r) }) => r,
        Ok(_) if just_started => return on_its_way(state, who, id),
        Err(r) if just_started && r.status == StatusCode::NOT_FOUND => {
            return on_its_way(state, who, id);
        }
        Ok(_) => {
            let r = Refusal::new(StatusCode::NOT_FOUND, format!("no run {id:?}"));
            return page(state, who, r.status, "Run", "/runs", &refusal_box(&r));
        }
        Err(r) => return page(state, who, r.status, "Run", "/runs", &refusal_box(&r)),
    };
    if run.run_id != id && notice.is_none() {
        // A unique prefix: the run's own address.
        return Redirect::to(&format!("/runs/{}", seg(&run.run_id))).into_response();
    }
    let gates: Vec<v1::Gate> = ask::<_, v1::ListGatesResponse>(
        state,
        "orchestrator",
        subjects::ORCHESTRATOR_LIST_GATES,
        &v1::ListGatesRequest {
            run_id: run.run_id.clone(),
            page_size: 50,
            ..Default::default()
        },
        None,
    )
    .await
    .map(|l| l.gates)
    .unwrap_or_default();
    let (started, took) = run_times(&run, now, tz);
    let open_gates: String = gates
        .iter()
        .filter(|g| g.state() == v1::GateState::Open)
        .filter_map(|g| g.request.as_ref())
        .map(|r| {
            format!(
                "<li>Waiting at gate <a href=\"/gates/{}\">{}</a></li>",
                seg(&r.gate_id),
                esc(&r.gate)
            )
        })
        .collect();
    let error = if run.error.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"error\" id=\"run-error\">{}</p>",
            esc(&run.error)
        )
    };
    let paused = if run.paused.is_empty() {
        String::new()
    } else {
        format!("<p class=\"warn\">{}</p>", esc(&run.paused))
    };
    let retry_of = if run.retry_of.is_empty() {
        String::new()
    } else {
        format!(
            "<dt>Retry of</dt><dd><a href=\"/runs/{}\" id=\"run-retry-of\">{}</a></dd>",
            seg(&run.retry_of),
            esc(&run.retry_of)
        )
    };
    let (status, notice) = match notice {
        Some(r) => (r.status, refusal_box(&r)),
        None => (StatusCode::OK, String::new()),
    };
    let params = params_html(&run);
    let params = if params.is_empty() {
        String::new()
    } else {
        format!("<h2>Parameters</h2><div id=\"run-params\">{params}</div>")
    };
    let body = format!(
        "{notice}<section id=\"run-live\" data-live=\"run gate\" data-run=\"{id}\">\
<dl class=\"stats\"><dt>Run</dt><dd id=\"run-id\">{id}</dd><dt>State</dt><dd id=\"run-state\" data-state=\"{state}\">{state_badge}</dd>\
<dt>Workflow</dt><dd>{wf}</dd><dt>Trigger</dt><dd>{trigger}</dd><dt>Started</dt><dd>{started}</dd><dt>Duration</dt><dd>{took}</dd>\
<dt>Requested by</dt><dd>{by}</dd><dt>Cost</dt><dd>{cost}</dd>{retry_of}</dl>{paused}{error}{actions}<ul class=\"gates\">{open_gates}</ul>\
{params}<h2>Timeline</h2>{timeline}<h2>Steps</h2>{steps}<div class=\"step-details\">{details}</div></section>",
        id = esc(&run.run_id),
        state = esc(&run_state(run.state())),
        state_badge = badge(&run_state(run.state())),
        wf = esc(&run.workflow),
        trigger = esc(&run.trigger),
        by = esc(&run.requested_by),
        cost = if run.cost_usd > 0.0 {
            format!("${:.4}", run.cost_usd)
        } else {
            "–".into()
        },
        actions = actions(who, &run),
        timeline = timeline(&run, &gates, now, tz),
        steps = steps_table(&run),
        details = step_details(state, &run),
    );
    page(
        state,
        who,
        status,
        &format!("Run {}", run.run_id),
        "/runs",
        &body,
    )
}

/// A run started a moment ago that the orchestrator has not taken yet.
fn on_its_way(state: &DashboardState, who: &Authed, id: &str) -> Response {
    let body = format!(
        "<section id=\"run-live\" data-live=\"run\" data-run=\"{id}\">\
<p class=\"notice\" id=\"run-pending\">Run <strong>{id}</strong> was started; the orchestrator has not taken it yet. \
This page fills in when it does.</p><dl class=\"stats\"><dt>State</dt>\
<dd id=\"run-state\" data-state=\"starting\">{badge}</dd></dl></section>",
        id = esc(id),
        badge = badge("starting"),
    );
    page(state, who, StatusCode::ACCEPTED, "Run", "/runs", &body)
}

/// `GET /runs/{id}`: the run (or a unique prefix of its id: redirected).
pub(crate) async fn show(
    State(state): State<DashboardState>,
    who: Authed,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    run_page(&state, &who, &id, !q.started.is_empty(), None).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CancelForm {
    csrf: String,
    reason: String,
}

impl WithCsrf for CancelForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /runs/{id}/cancel`: cancels a live run, then shows it.
pub(crate) async fn cancel(
    State(state): State<DashboardState>,
    who: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: CancelForm = match admin_form(&state, &who, &headers, &body, "cancel runs", "/runs") {
        Ok(f) => f,
        Err(resp) => return *resp,
    };
    let reason = form.reason.trim().chars().take(500).collect::<String>();
    let reason = if reason.is_empty() {
        format!("by {} on the dashboard", who.identity.id)
    } else {
        format!("{reason} (by {} on the dashboard)", who.identity.id)
    };
    let done: Result<v1::CancelRunResponse, Refusal> = ask(
        &state,
        "orchestrator",
        subjects::ORCHESTRATOR_CANCEL_RUN,
        &v1::CancelRunRequest {
            run_id: id.clone(),
            reason,
        },
        Some(&who.identity.id),
    )
    .await;
    match done {
        Ok(r) => {
            let run_id = r.run.map(|r| r.run_id).unwrap_or(id);
            tracing::info!(run = %run_id, by = %who.identity.id, "run cancelled on the dashboard");
            Redirect::to(&format!("/runs/{}", seg(&run_id))).into_response()
        }
        Err(r) => run_page(&state, &who, &id, false, Some(r)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RetryForm {
    csrf: String,
    /// `failed` (the default) or `start`.
    from: String,
}

impl WithCsrf for RetryForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /runs/{id}/retry`: a new run retrying this one from its failed step
/// (`from=failed`) or from the start (`from=start`); shows the new run.
pub(crate) async fn retry(
    State(state): State<DashboardState>,
    who: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: RetryForm = match admin_form(&state, &who, &headers, &body, "retry runs", "/runs") {
        Ok(f) => f,
        Err(resp) => return *resp,
    };
    let from_start = match form.from.as_str() {
        "" | "failed" => false,
        "start" => true,
        other => {
            let r = Refusal::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "retry from {:?}: failed or start",
                    other.chars().take(20).collect::<String>()
                ),
            );
            return run_page(&state, &who, &id, false, Some(r)).await;
        }
    };
    let done: Result<v1::RetryRunResponse, Refusal> = ask(
        &state,
        "orchestrator",
        subjects::ORCHESTRATOR_RETRY_RUN,
        &v1::RetryRunRequest {
            run_id: id.clone(),
            from_start,
        },
        Some(&who.identity.id),
    )
    .await;
    match done {
        Ok(r) if !r.run_id.is_empty() => {
            tracing::info!(run = %id, retry = %r.run_id, from_start, by = %who.identity.id, "run retried on the dashboard");
            Redirect::to(&format!("/runs/{}?started=1", seg(&r.run_id))).into_response()
        }
        Ok(_) => {
            let r = Refusal::new(
                StatusCode::BAD_GATEWAY,
                "the orchestrator did not name the new run",
            );
            run_page(&state, &who, &id, false, Some(r)).await
        }
        Err(r) => run_page(&state, &who, &id, false, Some(r)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ts(secs: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: secs,
            nanos: 0,
        })
    }

    #[test]
    fn the_timeline_has_a_row_per_step_and_gate_wait_in_time_order() {
        let now = Utc.timestamp_opt(1_000, 0).single().unwrap_or_default();
        let run = v1::Run {
            run_id: "r1".into(),
            created_at: ts(100),
            steps: vec![
                v1::RunStep {
                    step_id: "draft".into(),
                    role: "content-creator".into(),
                    state: v1::StepState::Succeeded as i32,
                    started_at: ts(100),
                    finished_at: ts(200),
                    review_rounds: 2,
                    verdict: Some(v1::Verdict {
                        pass: true,
                        score: 0.9,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                v1::RunStep {
                    step_id: "announce".into(),
                    role: "studio-orchestrator".into(),
                    state: v1::StepState::Dispatched as i32,
                    started_at: ts(600),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let gate = v1::Gate {
            request: Some(v1::GateRequest {
                gate: "creative_review".into(),
                reviewers: vec!["creative_director".into()],
                opened_at: ts(200),
                ..Default::default()
            }),
            state: v1::GateState::Approved as i32,
            decisions: vec![v1::GateDecision {
                reviewer: "creative_director".into(),
                decided_at: ts(600),
                ..Default::default()
            }],
            ..Default::default()
        };
        let svg = timeline(&run, &[gate], now, chrono_tz::Europe::Madrid);
        let order: Vec<&str> = svg
            .split("data-step=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        assert_eq!(order, ["draft", "gate creative_review", "announce"]);
        assert!(svg.contains("2 review rounds"), "{svg}");
        assert!(svg.contains("score 0.9 (pass)"), "{svg}");
        assert!(svg.contains("approved by creative_director"), "{svg}");
        // The start in the studio's zone, labelled (1970: CET, UTC+1).
        assert!(svg.contains(">01:01:40 CET<"), "{svg}");
        // The draft spans 100..200 of 100..1000 (the running step runs to now).
        assert!(
            svg.contains("x=\"280.0\" y=\"4.0\" width=\"68.9\""),
            "{svg}"
        );
    }

    #[test]
    fn kept_steps_of_a_retry_are_carried_over() {
        let step = |done: i64| v1::RunStep {
            step_id: "s".into(),
            finished_at: ts(done),
            ..Default::default()
        };
        let mut run = v1::Run {
            created_at: ts(500),
            ..Default::default()
        };
        assert_eq!(carried_over(&run, &step(100)), None, "not a retry");
        run.retry_of = "r0".into();
        assert_eq!(carried_over(&run, &step(100)).as_deref(), Some("r0"));
        assert_eq!(carried_over(&run, &step(600)), None);
        assert_eq!(carried_over(&run, &v1::RunStep::default()), None);
        // The orchestrator's label names the run.
        let kept = v1::RunStep {
            labels: vec!["campaign_launch".into(), "kept-from:r-1".into()],
            finished_at: ts(600),
            ..Default::default()
        };
        assert_eq!(carried_over(&run, &kept).as_deref(), Some("r-1"));
    }
}
