//! The runs list (`GET /runs`): filters by state, workflow, trigger and
//! creation date (in the studio's zone), a search, and paging, all as query
//! parameters so a link shows the same runs; and, for admins, the form that
//! starts a run (`POST /runs`): the same durable `run.start` the admin API's
//! `StartRun` publishes ([`concierto_admin::start_run_message`]), requested
//! by `dashboard:<reviewer id>`.
//!
//! Live: on the first page the list reloads when a run event arrives (new
//! runs come in at the top, the server applies the filters); on any page the
//! script sets a listed run's state cell from the event at once.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use concierto_bus::BusExt;
use concierto_core::subjects;
use concierto_proto::v1;
use serde::Deserialize;

use crate::DashboardState;
use crate::actions::{WithCsrf, admin_form, csrf_field};
use crate::auth::Authed;
use crate::html::{self, between, esc, human, page, refusal_box, seg};
use crate::services::{Refusal, ask};

/// `RUN_STATE_WAITING_GATE` → `waiting gate`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ")
}

pub(crate) fn run_state(s: v1::RunState) -> String {
    short(s.as_str_name(), "RUN_STATE_")
}

pub(crate) fn step_state(s: v1::StepState) -> String {
    short(s.as_str_name(), "STEP_STATE_")
}

pub(crate) fn gate_state(s: v1::GateState) -> String {
    short(s.as_str_name(), "GATE_STATE_")
}

/// A state as a badge (`st-waiting-gate`, coloured by the style sheet).
pub(crate) fn badge(text: &str) -> String {
    format!(
        "<span class=\"badge st-{}\">{}</span>",
        esc(&text.replace(' ', "-")),
        esc(text)
    )
}

/// Runs on one page of the list.
const PAGE_SIZE: u32 = 50;
/// Longest search kept (characters).
const MAX_QUERY_CHARS: usize = 200;
/// Longest page token passed on (they are the orchestrator's, and short).
const MAX_TOKEN_BYTES: usize = 512;

/// The list's query parameters.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct RunsQuery {
    /// `pending`, `running`, `waiting-gate`, `succeeded`, `failed`,
    /// `cancelled`; empty for any.
    state: String,
    workflow: String,
    trigger: String,
    /// First day, `YYYY-MM-DD` in the studio's zone.
    from: String,
    /// Last day (included), `YYYY-MM-DD` in the studio's zone.
    to: String,
    /// Words to search for.
    q: String,
    /// The orchestrator's page token.
    page: String,
}

impl RunsQuery {
    /// The query string of these filters on page `page` (empty: the first).
    fn link(&self, page: &str) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("state", self.state.as_str()),
            ("workflow", &self.workflow),
            ("trigger", &self.trigger),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
            ("page", page),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        let q = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if q.is_empty() {
            "/runs".into()
        } else {
            format!("/runs?{q}")
        }
    }

    /// Whether any filter narrows the list.
    fn filtered(&self) -> bool {
        [
            &self.state,
            &self.workflow,
            &self.trigger,
            &self.from,
            &self.to,
            &self.q,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }
}

/// `waiting-gate` (or `waiting_gate`, `WAITING GATE`) → the state.
pub(crate) fn parse_state(s: &str) -> Option<v1::RunState> {
    let name = format!(
        "RUN_STATE_{}",
        s.trim().to_ascii_uppercase().replace(['-', ' '], "_")
    );
    v1::RunState::from_str_name(&name).filter(|s| *s != v1::RunState::Unspecified)
}

/// Midnight starting `day` (`YYYY-MM-DD`) in `tz`, as UTC.
fn day_start(day: &str, tz: chrono_tz::Tz, field: &str) -> Result<DateTime<Utc>, String> {
    let d = NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{field} {day:?} is not a date (YYYY-MM-DD)"))?;
    let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A day that starts in a daylight-saving gap starts at its first instant.
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{field} {day:?} has no midnight in {tz}"))
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// The orchestrator's request for `q`, or what is wrong with `q`.
fn list_request(q: &RunsQuery, tz: chrono_tz::Tz) -> Result<v1::ListRunsRequest, String> {
    let state = if q.state.is_empty() {
        v1::RunState::Unspecified
    } else {
        parse_state(&q.state).ok_or_else(|| {
            format!(
                "state {:?} is not one of pending, running, waiting-gate, succeeded, failed, cancelled",
                q.state.chars().take(40).collect::<String>()
            )
        })?
    };
    let since = if q.from.is_empty() {
        None
    } else {
        Some(ts(day_start(&q.from, tz, "from")?))
    };
    let until = if q.to.is_empty() {
        None
    } else {
        let last = NaiveDate::parse_from_str(q.to.trim(), "%Y-%m-%d")
            .map_err(|_| format!("to {:?} is not a date (YYYY-MM-DD)", q.to))?;
        let next = last
            .succ_opt()
            .ok_or_else(|| format!("to {:?} is too late", q.to))?;
        Some(ts(day_start(
            &next.format("%Y-%m-%d").to_string(),
            tz,
            "to",
        )?))
    };
    if let (Some(a), Some(b)) = (&since, &until)
        && a.seconds >= b.seconds
    {
        return Err("from must be a day before or the same as to".into());
    }
    if q.page.len() > MAX_TOKEN_BYTES {
        return Err("page is not a page of this list".into());
    }
    Ok(v1::ListRunsRequest {
        workflow: q.workflow.trim().to_string(),
        trigger: q.trigger.trim().to_string(),
        state: state as i32,
        page_size: PAGE_SIZE,
        page_token: q.page.clone(),
        since,
        until,
        query: q.q.trim().chars().take(MAX_QUERY_CHARS).collect(),
    })
}

/// When a run started and how long it took (or has taken so far).
pub(crate) fn run_times(run: &v1::Run, now: DateTime<Utc>, tz: chrono_tz::Tz) -> (String, String) {
    let started = html::time(run.created_at.as_ref());
    let done = ended(run.state());
    let end = if done {
        html::time(run.updated_at.as_ref())
    } else {
        Some(now)
    };
    let took = match (started, end) {
        (Some(a), Some(b)) => human(between(a, b)) + if done { "" } else { " so far" },
        _ => "–".into(),
    };
    (html::when_in(run.created_at.as_ref(), tz), took)
}

/// Whether a run in `s` has ended.
pub(crate) fn ended(s: v1::RunState) -> bool {
    matches!(
        s,
        v1::RunState::Succeeded | v1::RunState::Failed | v1::RunState::Cancelled
    )
}

/// The state cell of a run's row (the script sets it from run events).
pub(crate) fn state_cell(s: v1::RunState) -> String {
    let name = run_state(s);
    format!(
        "<td class=\"run-state\" data-state=\"{}\">{}</td>",
        esc(&name.replace(' ', "-")),
        badge(&name)
    )
}

fn row(r: &v1::Run, now: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    let (started, took) = run_times(r, now, tz);
    let retry = if r.retry_of.is_empty() {
        String::new()
    } else {
        format!(
            " <span class=\"muted retry-of\" title=\"retry of {id}\">retry</span>",
            id = esc(&r.retry_of)
        )
    };
    format!(
        "<tr data-run=\"{id}\" data-workflow=\"{wf}\"><td class=\"run-id\"><a href=\"/runs/{link}\">{id}</a>{retry}</td>{state}\
<td>{wf}</td><td>{trigger}</td><td>{started}</td><td>{took}</td><td>{by}</td></tr>",
        id = esc(&r.run_id),
        link = seg(&r.run_id),
        state = state_cell(r.state()),
        wf = esc(&r.workflow),
        trigger = esc(&r.trigger),
        by = esc(&r.requested_by),
    )
}

fn select(name: &str, id: &str, current: &str, options: &[(String, String)]) -> String {
    let opts: String = options
        .iter()
        .map(|(value, label)| {
            format!(
                "<option value=\"{v}\"{sel}>{l}</option>",
                v = esc(value),
                sel = if value == current { " selected" } else { "" },
                l = esc(label)
            )
        })
        .collect();
    format!("<select name=\"{name}\" id=\"{id}\">{opts}</select>")
}

fn filters_form(state: &DashboardState, q: &RunsQuery) -> String {
    let studio = state.studio();
    let any = || vec![(String::new(), "any".to_string())];
    let mut states = any();
    states.extend(
        [
            "pending",
            "running",
            "waiting-gate",
            "succeeded",
            "failed",
            "cancelled",
        ]
        .iter()
        .map(|s| (s.to_string(), s.replace('-', " "))),
    );
    let mut workflows = any();
    workflows.extend(studio.workflows.keys().map(|w| (w.clone(), w.clone())));
    let mut triggers = any();
    triggers.extend(
        studio
            .triggers
            .iter()
            .map(|t| (t.name.clone(), t.name.clone())),
    );
    // A filter value the studio no longer has stays selectable.
    for (list, v) in [(&mut workflows, &q.workflow), (&mut triggers, &q.trigger)] {
        if !v.is_empty() && !list.iter().any(|(x, _)| x == v) {
            list.push((v.clone(), v.clone()));
        }
    }
    format!(
        "<form method=\"get\" action=\"/runs\" id=\"run-filters\" class=\"filters\">\
<label>State {state}</label><label>Workflow {wf}</label><label>Trigger {tr}</label>\
<label>From <input type=\"date\" name=\"from\" id=\"filter-from\" value=\"{from}\"></label>\
<label>To <input type=\"date\" name=\"to\" id=\"filter-to\" value=\"{to}\"></label>\
<label>Search <input type=\"search\" name=\"q\" id=\"filter-q\" value=\"{search}\" maxlength=\"{MAX_QUERY_CHARS}\" placeholder=\"id, workflow, brief…\"></label>\
<button type=\"submit\" id=\"filter-submit\">Filter</button>{clear}</form>",
        state = select("state", "filter-state", &q.state, &states),
        wf = select("workflow", "filter-workflow", &q.workflow, &workflows),
        tr = select("trigger", "filter-trigger", &q.trigger, &triggers),
        from = esc(&q.from),
        to = esc(&q.to),
        search = esc(&q.q),
        clear = if q.filtered() {
            " <a href=\"/runs\" id=\"filter-clear\">Clear</a>"
        } else {
            ""
        },
    )
}

/// The start form (admins only).
fn start_form(state: &DashboardState, who: &Authed) -> String {
    if !who.identity.is_admin() {
        return String::new();
    }
    let studio = state.studio();
    if studio.workflows.is_empty() {
        return String::new();
    }
    let workflows: Vec<(String, String)> = studio
        .workflows
        .values()
        .map(|w| {
            let label = if w.description.is_empty() {
                w.name.clone()
            } else {
                format!(
                    "{} — {}",
                    w.name,
                    w.description.chars().take(60).collect::<String>()
                )
            };
            (w.name.clone(), label)
        })
        .collect();
    let priorities = [
        (String::new(), "the workflow's".to_string()),
        ("normal".to_string(), "normal".to_string()),
        ("urgent".to_string(), "urgent".to_string()),
    ];
    format!(
        "<section id=\"start\"><h2>Start a run</h2>\
<form method=\"post\" action=\"/runs\" id=\"start-run\" class=\"start\">{csrf}\
<label>Workflow {wf}</label><label>Priority {prio}</label>\
<label class=\"wide\">Brief <textarea name=\"brief\" id=\"start-brief\" rows=\"4\" maxlength=\"{max}\" \
placeholder=\"What this run is for (Markdown); the steps get it as the brief parameter\"></textarea></label>\
<label class=\"wide\">Parameters <textarea name=\"params\" id=\"start-params\" rows=\"2\" \
placeholder=\"key=value, one a line\"></textarea></label>\
<div class=\"buttons\"><button type=\"submit\" id=\"start-submit\" data-action=\"start\">Start</button></div></form></section>",
        csrf = csrf_field(who),
        wf = select("workflow", "start-workflow", "", &workflows),
        prio = select("priority", "start-priority", "", &priorities),
        max = concierto_admin::MAX_PARAM_VALUE_BYTES,
    )
}

/// `GET /runs`: the filtered runs, newest first, one page at a time.
pub(crate) async fn list(
    State(state): State<DashboardState>,
    who: Authed,
    Query(q): Query<RunsQuery>,
) -> Response {
    list_page(&state, &who, &q, None).await
}

async fn list_page(
    state: &DashboardState,
    who: &Authed,
    q: &RunsQuery,
    notice: Option<Refusal>,
) -> Response {
    let now = state.now();
    let tz = state.studio().studio.timezone;
    let first = q.page.is_empty();
    let (status, inner) = match list_request(q, tz) {
        Err(why) => (
            StatusCode::BAD_REQUEST,
            refusal_box(&Refusal::new(StatusCode::BAD_REQUEST, why)),
        ),
        Ok(req) => {
            let listed: Result<v1::ListRunsResponse, Refusal> = ask(
                state,
                "orchestrator",
                subjects::ORCHESTRATOR_LIST_RUNS,
                &req,
                None,
            )
            .await;
            match listed {
                Ok(l) => {
                    let rows: String = l.runs.iter().map(|r| row(r, now, tz)).collect();
                    let empty = if l.runs.is_empty() {
                        if q.filtered() || !first {
                            "<p class=\"muted\" id=\"no-runs\">No run matches.</p>"
                        } else {
                            "<p class=\"muted\" id=\"no-runs\">No run yet.</p>"
                        }
                    } else {
                        ""
                    };
                    let mut pager = String::new();
                    if !first {
                        pager.push_str(&format!(
                            "<a href=\"{}\" id=\"runs-first\">Newest</a> ",
                            esc(&q.link(""))
                        ));
                    }
                    if !l.next_page_token.is_empty() {
                        pager.push_str(&format!(
                            "<a href=\"{}\" id=\"runs-next\" rel=\"next\">Older →</a>",
                            esc(&q.link(&l.next_page_token))
                        ));
                    }
                    (
                        StatusCode::OK,
                        format!(
                            "<table id=\"run-list\" data-first-page=\"{first}\"><thead><tr><th>Run</th><th>State</th>\
<th>Workflow</th><th>Trigger</th><th>Started ({zone})</th><th>Duration</th><th>Requested by</th></tr></thead>\
<tbody>{rows}</tbody></table>{empty}<nav class=\"pager\">{pager}</nav>",
                            zone = esc(tz.name()),
                        ),
                    )
                }
                Err(r) => (r.status, refusal_box(&r)),
            }
        }
    };
    let (status, notice) = match notice {
        Some(r) => (r.status, refusal_box(&r)),
        None => (status, String::new()),
    };
    // Only the first page takes new runs; later pages update rows in place.
    let live = if first { " data-live=\"run\"" } else { "" };
    let body = format!(
        "{notice}{start}{filters}<section id=\"runs\"{live} data-list=\"runs\">{inner}</section>",
        start = start_form(state, who),
        filters = filters_form(state, q),
    );
    page(state, who, status, "Runs", "/runs", &body)
}

/// The start form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartForm {
    csrf: String,
    workflow: String,
    priority: String,
    brief: String,
    params: String,
}

impl WithCsrf for StartForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `key=value` lines (blank lines skipped) and the brief as `brief`.
fn start_params(
    brief: &str,
    lines: &str,
) -> Result<std::collections::HashMap<String, String>, String> {
    let mut params = std::collections::HashMap::new();
    for (n, line) in lines.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "parameter line {} is not key=value: {:?}",
                n + 1,
                line.chars().take(60).collect::<String>()
            ));
        };
        params.insert(k.trim().to_string(), v.trim().to_string());
        if params.len() > concierto_admin::MAX_RUN_PARAMS {
            break; // the admin check names the bound
        }
    }
    let brief = brief.trim();
    if !brief.is_empty() {
        params.insert("brief".into(), brief.replace("\r\n", "\n"));
    }
    Ok(params)
}

fn priority(s: &str) -> Result<v1::Priority, String> {
    match s.trim() {
        "" => Ok(v1::Priority::Unspecified),
        "normal" => Ok(v1::Priority::Normal),
        "urgent" => Ok(v1::Priority::Urgent),
        other => Err(format!(
            "priority {:?} is not normal or urgent",
            other.chars().take(20).collect::<String>()
        )),
    }
}

/// `POST /runs`: starts a run of the chosen workflow with the brief and
/// parameters, then shows its page.
pub(crate) async fn start(
    State(state): State<DashboardState>,
    who: Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: StartForm = match admin_form(&state, &who, &headers, &body, "start runs", "/runs") {
        Ok(f) => f,
        Err(resp) => return *resp,
    };
    let bad = |m: String| Refusal::new(StatusCode::BAD_REQUEST, m);
    let checked = start_params(&form.brief, &form.params)
        .and_then(|params| priority(&form.priority).map(|p| (params, p)));
    let (params, prio) = match checked {
        Ok(x) => x,
        Err(m) => return list_page(&state, &who, &RunsQuery::default(), Some(bad(m))).await,
    };
    let studio = state.studio();
    let req = v1::StartRunRequest {
        workflow: form.workflow.trim().to_string(),
        priority: prio as i32,
        params,
        run_id: String::new(),
    };
    let msg = match concierto_admin::start_run_message(
        &studio,
        req,
        format!("dashboard:{}", who.identity.id),
        state.now(),
    ) {
        Ok(m) => m,
        Err(s) => {
            let r = Refusal::from_status(&s);
            return list_page(&state, &who, &RunsQuery::default(), Some(r)).await;
        }
    };
    if let Err(e) = state
        .bus()
        .publish_durable_proto(
            &subjects::run_start_for(&msg.run_id, studio.server.partitions),
            &msg,
            &msg.run_id,
        )
        .await
    {
        let r = Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not store the run start: {e}"),
        );
        return list_page(&state, &who, &RunsQuery::default(), Some(r)).await;
    }
    tracing::info!(run = %msg.run_id, workflow = %msg.workflow, by = %who.identity.id, "run started on the dashboard");
    Redirect::to(&format!("/runs/{}?started=1", seg(&msg.run_id))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn states_read_in_any_spelling() {
        assert_eq!(parse_state("waiting-gate"), Some(v1::RunState::WaitingGate));
        assert_eq!(parse_state("WAITING_GATE"), Some(v1::RunState::WaitingGate));
        assert_eq!(parse_state("failed"), Some(v1::RunState::Failed));
        assert_eq!(parse_state("unspecified"), None);
        assert_eq!(parse_state("nope"), None);
    }

    #[test]
    fn dates_are_days_in_the_studio_zone_and_to_is_included() {
        let q = RunsQuery {
            state: "failed".into(),
            workflow: "launch".into(),
            from: "2026-03-10".into(),
            to: "2026-03-10".into(),
            q: "spring".into(),
            ..Default::default()
        };
        let r = list_request(&q, chrono_tz::Europe::Madrid).expect("valid");
        // Midnight in Madrid (UTC+1 in March) is 23:00 UTC the day before.
        let since = Utc
            .with_ymd_and_hms(2026, 3, 9, 23, 0, 0)
            .single()
            .map(|t| t.timestamp());
        assert_eq!(r.since.map(|t| t.seconds), since);
        assert_eq!(r.until.map(|t| t.seconds), since.map(|s| s + 24 * 3600));
        assert_eq!(r.state, v1::RunState::Failed as i32);
        assert_eq!(
            (r.workflow.as_str(), r.query.as_str()),
            ("launch", "spring")
        );
        let bad = |q: RunsQuery| list_request(&q, chrono_tz::UTC).err();
        assert!(
            bad(RunsQuery {
                from: "10/03/2026".into(),
                ..Default::default()
            })
            .is_some_and(|e| e.contains("not a date"))
        );
        assert!(
            bad(RunsQuery {
                from: "2026-03-11".into(),
                to: "2026-03-10".into(),
                ..Default::default()
            })
            .is_some()
        );
        assert!(
            bad(RunsQuery {
                state: "sleeping".into(),
                ..Default::default()
            })
            .is_some()
        );
        assert!(
            bad(RunsQuery {
                page: "x".repeat(10_000),
                ..Default::default()
            })
            .is_some()
        );
    }

    #[test]
    fn links_keep_the_filters_and_the_page() {
        let q = RunsQuery {
            state: "failed".into(),
            q: "a b&c".into(),
            ..Default::default()
        };
        assert_eq!(q.link(""), "/runs?state=failed&q=a+b%26c");
        assert_eq!(q.link("t1"), "/runs?state=failed&q=a+b%26c&page=t1");
        assert_eq!(RunsQuery::default().link(""), "/runs");
    }

    #[test]
    fn params_are_key_value_lines_and_the_brief() {
        let p =
            start_params("  Spring *launch*\r\nline 2 ", "a=1\n\n b = two=2 \n").expect("valid");
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "two=2");
        assert_eq!(p["brief"], "Spring *launch*\nline 2");
        assert!(start_params("", "novalue").is_err());
        assert!(start_params("", "").expect("valid").is_empty());
    }
}
