//! The pages over the bus: overview (metrics), agents, queue, runs (with a
//! step timeline), gates (decided from the page) and the feedback inbox.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use concierto_core::config::Goal;
use concierto_core::grammar::Quantity;
use concierto_core::subjects;
use concierto_proto::v1;
use serde::Deserialize;

use crate::DashboardState;
use crate::auth::{Authed, check_csrf};
use crate::html::{self, between, esc, human, num, page, refusal_box, seg, when};
use crate::live;
use crate::services::{Refusal, ask};

/// `RUN_STATE_WAITING_GATE` → `waiting gate`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ")
}

fn run_state(s: v1::RunState) -> String {
    short(s.as_str_name(), "RUN_STATE_")
}

fn step_state(s: v1::StepState) -> String {
    short(s.as_str_name(), "STEP_STATE_")
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

fn proto_duration(d: Option<&prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(*d).ok())
}

/// `GET /`: every progress metric against its target, and threshold crossings.
pub(crate) async fn overview(State(state): State<DashboardState>, who: Authed) -> Response {
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
                    let series: Vec<(i64, f64)> = x
                        .series
                        .iter()
                        .map(|p| (p.at.map(|t| t.seconds).unwrap_or(0), p.value))
                        .collect();
                    let empty = x.series.is_empty();
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
                    format!(
                        "<tr class=\"metric\" data-metric=\"{name}\"><td>{name}</td><td>{group}</td>\
<td class=\"num\">{current}</td><td>{target}</td><td>{on}</td><td>{chart}</td></tr>",
                        name = esc(&x.name),
                        group = esc(&x.group),
                        current = if empty { "–".to_string() } else { num(x.current) },
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
            let defined: String = state
                .studio()
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

fn run_times(run: &v1::Run, now: DateTime<Utc>) -> (String, String) {
    let started = html::time(run.created_at.as_ref());
    let done = matches!(
        run.state(),
        v1::RunState::Succeeded | v1::RunState::Failed | v1::RunState::Cancelled
    );
    let end = if done {
        html::time(run.updated_at.as_ref())
    } else {
        Some(now)
    };
    let took = match (started, end) {
        (Some(a), Some(b)) => human(between(a, b)) + if done { "" } else { " so far" },
        _ => "–".into(),
    };
    (when(run.created_at.as_ref()), took)
}

/// `GET /runs`: the runs, newest first, and the triggers.
pub(crate) async fn runs(State(state): State<DashboardState>, who: Authed) -> Response {
    let now = state.now();
    let listed: Result<v1::ListRunsResponse, Refusal> = ask(
        &state,
        "orchestrator",
        subjects::ORCHESTRATOR_LIST_RUNS,
        &v1::ListRunsRequest {
            page_size: 100,
            ..Default::default()
        },
        None,
    )
    .await;
    let (status, inner) = match listed {
        Ok(l) if l.runs.is_empty() => (
            StatusCode::OK,
            "<p class=\"muted\">No run yet.</p>".to_string(),
        ),
        Ok(l) => {
            let rows: String = l
                .runs
                .iter()
                .map(|r| {
                    let (started, took) = run_times(r, now);
                    format!(
                        "<tr data-run=\"{id}\"><td><a href=\"/runs/{link}\">{id}</a></td><td>{state}</td>\
<td>{wf}</td><td>{trigger}</td><td>{started}</td><td>{took}</td></tr>",
                        id = esc(&r.run_id),
                        link = seg(&r.run_id),
                        state = badge(&run_state(r.state())),
                        wf = esc(&r.workflow),
                        trigger = esc(&r.trigger),
                    )
                })
                .collect();
            (
                StatusCode::OK,
                format!(
                    "<table id=\"run-list\"><thead><tr><th>Run</th><th>State</th><th>Workflow</th><th>Trigger</th>\
<th>Started</th><th>Duration</th></tr></thead><tbody>{rows}</tbody></table>"
                ),
            )
        }
        Err(r) => (r.status, refusal_box(&r)),
    };
    let triggers: Result<v1::ListTriggersResponse, Refusal> = ask(
        &state,
        "scheduler",
        subjects::SCHEDULER_TRIGGERS,
        &v1::ListTriggersRequest::default(),
        None,
    )
    .await;
    let triggers = match triggers {
        Ok(t) if t.triggers.is_empty() => "<p class=\"muted\">No trigger.</p>".to_string(),
        Ok(t) => {
            let rows: String = t
                .triggers
                .iter()
                .map(|t| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                        esc(&t.name),
                        esc(&t.kind),
                        esc(&t.spec),
                        esc(&t.workflow),
                        when(t.next_fire.as_ref()),
                        when(t.last_fire.as_ref()),
                        t.fires
                    )
                })
                .collect();
            format!(
                "<table><thead><tr><th>Trigger</th><th>Kind</th><th>When</th><th>Workflow</th><th>Next</th><th>Last</th><th>Fires</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        }
        Err(r) => refusal_box(&r),
    };
    let body = format!(
        "<section id=\"runs\" data-live=\"run\">{inner}</section><section id=\"triggers\"><h2>Triggers</h2>{triggers}</section>"
    );
    page(&state, &who, status, "Runs", "/runs", &body)
}

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

/// The SVG timeline: one row per step and per gate wait, along time.
fn timeline(run: &v1::Run, gates: &[v1::Gate], now: DateTime<Utc>) -> String {
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
        start = t0.format("%H:%M:%S"),
        total = human(between(t0, t1)),
    )
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
            let tools = html::tool_calls(&s.tool_calls);
            format!(
                "<tr data-step=\"{id}\"><td>{id}{error}{tools}</td><td>{role}</td><td>{state}</td><td class=\"num\">{attempt}</td>\
<td class=\"num\">{rounds}</td><td>{verdict}</td><td>{took}</td><td class=\"num\">{tokens}</td><td class=\"num\">{cost}</td></tr>",
                id = esc(&s.step_id),
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

/// `GET /runs/{id}`: the run with its step timeline.
pub(crate) async fn run(
    State(state): State<DashboardState>,
    who: Authed,
    Path(id): Path<String>,
) -> Response {
    let now = state.now();
    let got: Result<v1::GetRunResponse, Refusal> = ask(
        &state,
        "orchestrator",
        subjects::ORCHESTRATOR_GET_RUN,
        &v1::GetRunRequest { run_id: id.clone() },
        None,
    )
    .await;
    let run = match got {
        Ok(v1::GetRunResponse { run: Some(r) }) => r,
        Ok(_) => {
            let r = Refusal::new(StatusCode::NOT_FOUND, format!("no run {id:?}"));
            return page(&state, &who, r.status, "Run", "/runs", &refusal_box(&r));
        }
        Err(r) => return page(&state, &who, r.status, "Run", "/runs", &refusal_box(&r)),
    };
    let gates: Vec<v1::Gate> = ask::<_, v1::ListGatesResponse>(
        &state,
        "orchestrator",
        subjects::ORCHESTRATOR_LIST_GATES,
        &v1::ListGatesRequest {
            run_id: id.clone(),
            page_size: 50,
            ..Default::default()
        },
        None,
    )
    .await
    .map(|l| l.gates)
    .unwrap_or_default();
    let (started, took) = run_times(&run, now);
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
        format!("<p class=\"error\">{}</p>", esc(&run.error))
    };
    let paused = if run.paused.is_empty() {
        String::new()
    } else {
        format!("<p class=\"warn\">{}</p>", esc(&run.paused))
    };
    let error = format!("{paused}{error}");
    let body = format!(
        "<section id=\"run-live\" data-live=\"run gate\" data-run=\"{id}\">\
<dl class=\"stats\"><dt>Run</dt><dd id=\"run-id\">{id}</dd><dt>State</dt><dd id=\"run-state\" data-state=\"{state}\">{state_badge}</dd>\
<dt>Workflow</dt><dd>{wf}</dd><dt>Trigger</dt><dd>{trigger}</dd><dt>Started</dt><dd>{started}</dd><dt>Duration</dt><dd>{took}</dd>\
<dt>Requested by</dt><dd>{by}</dd><dt>Cost</dt><dd>{cost}</dd></dl>{error}<ul class=\"gates\">{open_gates}</ul>\
<h2>Timeline</h2>{timeline}<h2>Steps</h2>{steps}</section>",
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
        timeline = timeline(&run, &gates, now),
        steps = steps_table(&run),
    );
    page(
        &state,
        &who,
        StatusCode::OK,
        &format!("Run {}", run.run_id),
        "/runs",
        &body,
    )
}

fn countdown(due: Option<&prost_types::Timestamp>) -> String {
    match html::time(due) {
        Some(t) => format!(
            "<span class=\"countdown\" data-due=\"{}\">due {}</span>",
            t.to_rfc3339_opts(SecondsFormat::Millis, true),
            t.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        None => "<span class=\"muted\">no SLA</span>".into(),
    }
}

fn gate_card(g: &v1::Gate, me: &str) -> String {
    let r = g.request.clone().unwrap_or_default();
    let mine = if r.reviewers.iter().any(|x| x == me) {
        " <span class=\"badge on\">yours</span>"
    } else {
        ""
    };
    let status = if g.state() == v1::GateState::Open {
        countdown(r.due_at.as_ref())
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
<p>Run <a href=\"/runs/{run_link}\">{run}</a> · step {step} · reviewers {reviewers}</p><p>{status}</p><p class=\"summary\">{summary}</p></article>",
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
                    .map(|g| gate_card(g, &who.identity.id))
                    .collect()
            };
            let closed_html: String = closed
                .iter()
                .take(20)
                .map(|g| gate_card(g, &who.identity.id))
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

async fn gate_page(
    state: &DashboardState,
    who: &Authed,
    id: &str,
    notice: Option<(StatusCode, String, bool)>,
) -> Response {
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
    let gate = match got {
        Ok(v1::GetGateResponse { gate: Some(g) }) => g,
        Ok(_) => {
            let r = Refusal::new(StatusCode::NOT_FOUND, format!("no gate {id:?}"));
            return page(state, who, r.status, "Gate", "/gates", &refusal_box(&r));
        }
        Err(r) => return page(state, who, r.status, "Gate", "/gates", &refusal_box(&r)),
    };
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
                when(d.decided_at.as_ref()),
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
    let form = if gate.state() == v1::GateState::Open {
        format!(
            "<form method=\"post\" action=\"/gates/{link}/decide\" id=\"decide\" class=\"decide\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>Notes <textarea name=\"notes\" rows=\"3\" placeholder=\"What to change, or why\"></textarea></label>\
<div class=\"buttons\"><button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\" class=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"reject\" id=\"reject\" class=\"reject\">Reject</button>\
<button type=\"submit\" name=\"decision\" value=\"request_changes\" id=\"request-changes\">Request changes</button></div></form>",
            link = seg(&r.gate_id),
            csrf = esc(&who.csrf),
        )
    } else {
        String::new()
    };
    let body = format!(
        "<section id=\"gate-live\" data-live=\"gate\">{notice}\
<dl class=\"stats\"><dt>Gate</dt><dd>{gate}</dd><dt>State</dt><dd id=\"gate-state\" data-state=\"{state}\">{state_badge}</dd>\
<dt>Run</dt><dd><a href=\"/runs/{run_link}\" id=\"gate-run\">{run}</a></dd><dt>Step</dt><dd>{step}</dd><dt>Label</dt><dd>{label}</dd>\
<dt>Reviewers</dt><dd>{reviewers}</dd><dt>Round</dt><dd>{round}</dd><dt>Opened</dt><dd>{opened}</dd><dt>SLA</dt><dd>{due}</dd></dl>\
<p class=\"summary\">{summary}</p><h2>Draft</h2><pre class=\"draft\" id=\"draft\">{content}</pre>\
{form}<h2>Decisions</h2><ul class=\"decisions\">{decisions}</ul></section>",
        gate = esc(&r.gate),
        state = esc(&gate_state(gate.state())),
        state_badge = badge(&gate_state(gate.state())),
        run_link = seg(&r.run_id),
        run = esc(&r.run_id),
        step = esc(&r.step_id),
        label = esc(&r.label),
        reviewers = esc(&r.reviewers.join(", ")),
        round = r.round,
        opened = when(r.opened_at.as_ref()),
        due = if gate.state() == v1::GateState::Open {
            countdown(r.due_at.as_ref())
        } else {
            when(r.due_at.as_ref())
        },
        summary = esc(&r.summary),
        content = esc(&r.content),
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

/// `GET /gates/{id}`: the gate, its draft, and the decision buttons.
pub(crate) async fn gate(
    State(state): State<DashboardState>,
    who: Authed,
    Path(id): Path<String>,
    Query(q): Query<GateQuery>,
) -> Response {
    let notice = (!q.decided.is_empty()).then(|| {
        (
            StatusCode::OK,
            format!(
                "Your decision was recorded: {}.",
                q.decided.replace('_', " ")
            ),
            false,
        )
    });
    gate_page(&state, &who, &id, notice).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DecideForm {
    csrf: String,
    decision: String,
    notes: String,
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
            let msg = format!("unknown decision {other:?}: approve, reject or request_changes");
            return gate_page(
                &state,
                &who,
                &id,
                Some((StatusCode::BAD_REQUEST, msg, true)),
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
        Ok(_) => {
            tracing::info!(gate = %id, reviewer = %who.identity.id, decision = %form.decision, "gate decided on the dashboard");
            Redirect::to(&format!("/gates/{}?decided={}", seg(&id), form.decision)).into_response()
        }
        Err(r) => gate_page(&state, &who, &id, Some((r.status, r.message, true))).await,
    }
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
    fn enum_names_read_as_words() {
        assert_eq!(run_state(v1::RunState::WaitingGate), "waiting gate");
        assert_eq!(step_state(v1::StepState::Succeeded), "succeeded");
        assert_eq!(
            gate_state(v1::GateState::ChangesRequested),
            "changes requested"
        );
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
        let svg = timeline(&run, &[gate], now);
        let order: Vec<&str> = svg
            .split("data-step=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        assert_eq!(order, ["draft", "gate creative_review", "announce"]);
        assert!(svg.contains("2 review rounds"), "{svg}");
        assert!(svg.contains("score 0.9 (pass)"), "{svg}");
        assert!(svg.contains("approved by creative_director"), "{svg}");
        // The draft spans 100..200 of 100..1000 (the running step runs to now).
        assert!(
            svg.contains("x=\"280.0\" y=\"4.0\" width=\"68.9\""),
            "{svg}"
        );
    }
}
