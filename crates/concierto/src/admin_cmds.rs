//! `concierto run|gate|feedback|trigger ...`: the admin API from the command
//! line. Each command is one call (or one stream) to `concierto.v1.AdminService`;
//! tables for people, `--json` for programs.

use std::collections::HashMap;

use clap::{Subcommand, ValueEnum};
use concierto_proto::v1;
use futures::StreamExt;
use serde_json::Value;

use crate::client::{CliError, Conn, ConnArgs};
use crate::output::{self, Table, Zone, or_dash, trunc, when};
use crate::run_list::{self, RunFilter};
pub use crate::trigger_cmds::{TriggerCmd, trigger};

/// A run state to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunStateArg {
    /// Accepted, no step started yet.
    Pending,
    /// Steps are running.
    Running,
    /// Waiting for a person at a quality gate.
    WaitingGate,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStateArg {
    fn proto(self) -> v1::RunState {
        match self {
            RunStateArg::Pending => v1::RunState::Pending,
            RunStateArg::Running => v1::RunState::Running,
            RunStateArg::WaitingGate => v1::RunState::WaitingGate,
            RunStateArg::Succeeded => v1::RunState::Succeeded,
            RunStateArg::Failed => v1::RunState::Failed,
            RunStateArg::Cancelled => v1::RunState::Cancelled,
        }
    }
}

/// A gate state to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GateStateArg {
    /// Waiting for a decision.
    Open,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// Sent back for changes.
    ChangesRequested,
}

impl GateStateArg {
    fn proto(self) -> v1::GateState {
        match self {
            GateStateArg::Open => v1::GateState::Open,
            GateStateArg::Approved => v1::GateState::Approved,
            GateStateArg::Rejected => v1::GateState::Rejected,
            GateStateArg::ChangesRequested => v1::GateState::ChangesRequested,
        }
    }
}

/// A priority to start a run or fire a trigger with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriorityArg {
    /// Ordinary work.
    Normal,
    /// Ahead of normal work.
    Urgent,
}

pub(crate) fn priority(p: Option<PriorityArg>) -> i32 {
    match p {
        None => v1::Priority::Unspecified as i32,
        Some(PriorityArg::Normal) => v1::Priority::Normal as i32,
        Some(PriorityArg::Urgent) => v1::Priority::Urgent as i32,
    }
}

/// `KEY=VALUE`.
fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `concierto run ...`.
#[derive(Debug, Subcommand)]
pub enum RunCmd {
    /// Runs, newest first.
    Ls {
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs in this state.
        #[arg(long, value_enum)]
        state: Option<RunStateArg>,
        /// Only runs created at or after this: a date or `"2026-03-29 09:00"` in
        /// the studio's zone, or RFC 3339.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only runs created before this (a date alone includes that day).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Only runs whose id, workflow, trigger, requester, error or params
        /// contain every word of this (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        query: Option<String>,
        /// Go on from where an earlier listing stopped (the token it printed).
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the runs as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run with its steps (outputs cut in the table, in full with --json).
    Show {
        /// The run id (or a unique prefix of it).
        id: String,
        /// Print the run as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a run of a workflow (admin role); prints its id.
    Start {
        /// The workflow.
        workflow: String,
        /// A parameter handed to every step (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_kv)]
        params: Vec<(String, String)>,
        /// Priority (default: the workflow's).
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
        /// The run id, to make the start idempotent (default: one the server picks).
        #[arg(long)]
        id: Option<String>,
    },
    /// Retry a failed or cancelled run (admin role): a new run resumes at its
    /// first failed step, keeping the outputs of the steps before it; prints
    /// the new run's id.
    Retry {
        /// The run id (or a unique prefix of it).
        id: String,
        /// Run every step again instead.
        #[arg(long)]
        from_start: bool,
    },
    /// Cancel a live run (admin role).
    Cancel {
        /// The run id.
        id: String,
        /// Why, for the run's record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print every event of one run (or of all runs) as it happens, until Ctrl-C.
    Watch {
        /// The run id (default: every run).
        id: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// `concierto gate ...`.
#[derive(Debug, Subcommand)]
pub enum GateCmd {
    /// Quality gates, open ones first.
    Ls {
        /// Only gates in this state.
        #[arg(long, value_enum)]
        state: Option<GateStateArg>,
        /// Only gates of this run.
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print the gates as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One gate: what it is about, the content to decide on, its decisions.
    Show {
        /// The gate id, or the id of a run waiting at a gate (or a unique
        /// prefix of either).
        id: String,
        /// Print the gate as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a gate (one of its reviewers only); the run goes on.
    Approve {
        /// The gate id.
        id: String,
        /// Notes for the record.
        #[arg(long)]
        notes: Option<String>,
    },
    /// Reject a gate (one of its reviewers only).
    Reject {
        /// The gate id.
        id: String,
        /// Why (required).
        #[arg(long, required = true)]
        notes: String,
    },
    /// Send the work back with the changes to make (one of its reviewers only).
    RequestChanges {
        /// The gate id.
        id: String,
        /// The changes to make (required).
        #[arg(long, required = true)]
        notes: String,
    },
    /// Print gates as they open, remind, escalate and close, until Ctrl-C.
    Watch {
        /// Only gates you may decide.
        #[arg(long)]
        mine: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// `concierto feedback ...`.
#[derive(Debug, Subcommand)]
pub enum FeedbackCmd {
    /// Give feedback as yourself; prints its id.
    Submit {
        /// The feedback.
        #[arg(long)]
        text: String,
        /// A subject line.
        #[arg(long)]
        subject: Option<String>,
        /// The run it is about.
        #[arg(long, value_name = "ID")]
        run: Option<String>,
    },
    /// Feedback received, with its category and routing.
    Ls {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the entries as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One piece of feedback with the reply sent back to its author.
    Show {
        /// Its id.
        id: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Largest page asked for when following pages.
const PAGE: u32 = 200;

fn steps_done(r: &v1::Run) -> String {
    let done = r
        .steps
        .iter()
        .filter(|s| s.state() == v1::StepState::Succeeded)
        .count();
    format!("{done}/{}", r.steps.len())
}

fn run_by(r: &v1::Run) -> String {
    if !r.trigger.is_empty() {
        format!("trigger:{}", r.trigger)
    } else {
        or_dash(&r.requested_by)
    }
}

/// The runs table.
fn runs_table(runs: &[v1::Run], z: Zone) -> Table {
    let mut t = Table::new(&[
        "RUN", "WORKFLOW", "STATE", "PRIORITY", "STEPS", "CREATED", "BY", "ERROR",
    ]);
    for r in runs {
        t.row(vec![
            r.run_id.clone(),
            r.workflow.clone(),
            output::run_state(r.state),
            output::priority(r.priority),
            steps_done(r),
            when(r.created_at.as_ref(), z),
            run_by(r),
            trunc(&r.error, 40),
        ]);
    }
    t
}

/// A run as `key: value` lines and a table of its steps.
fn print_run(r: &v1::Run, z: Zone) {
    let mut head = Table::new(&["", ""]);
    for (k, v) in [
        ("run", r.run_id.clone()),
        ("workflow", r.workflow.clone()),
        ("state", output::run_state(r.state)),
        ("priority", output::priority(r.priority)),
        ("by", run_by(r)),
        ("created", when(r.created_at.as_ref(), z)),
        ("updated", when(r.updated_at.as_ref(), z)),
    ] {
        head.row(vec![format!("{k}:"), v]);
    }
    if r.cost_usd > 0.0 {
        head.row(vec!["cost:".into(), format!("${:.4}", r.cost_usd)]);
    }
    if !r.paused.is_empty() {
        head.row(vec!["paused:".into(), r.paused.clone()]);
    }
    if !r.retry_of.is_empty() {
        head.row(vec!["retry of:".into(), r.retry_of.clone()]);
    }
    if !r.params.is_empty() {
        let mut params: Vec<String> = r
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", trunc(v, 40)))
            .collect();
        params.sort();
        head.row(vec!["params:".into(), trunc(&params.join(" "), 200)]);
    }
    if !r.error.is_empty() {
        head.row(vec!["error:".into(), r.error.clone()]);
    }
    // Skip the empty header line of the key/value table.
    let text = head.render();
    print!("{}", text.split_once('\n').map(|x| x.1).unwrap_or(""));
    println!();
    let mut t = Table::new(&[
        "STEP", "STATE", "ATTEMPT", "ROLE", "EXECUTOR", "REVIEWS", "SCORE", "LABELS", "OUTPUT",
        "ERROR",
    ]);
    for s in &r.steps {
        let score = s
            .verdict
            .as_ref()
            .map(|v| format!("{:.2}{}", v.score, if v.pass { " pass" } else { " fail" }))
            .unwrap_or_else(|| "-".into());
        t.row(vec![
            s.step_id.clone(),
            output::step_state(s.state),
            s.attempt.to_string(),
            s.role.clone(),
            s.usage
                .as_ref()
                .map(|u| or_dash(&u.executor))
                .unwrap_or_else(|| "-".into()),
            s.review_rounds.to_string(),
            score,
            or_dash(&s.labels.join(",")),
            or_dash(&trunc(&s.output, 40)),
            or_dash(&trunc(&s.error, 40)),
        ]);
    }
    print!("{}", t.render());
    if r.steps.iter().any(|s| !s.tool_calls.is_empty()) {
        println!();
        let mut calls = Table::new(&["STEP", "TOOL", "ARGUMENTS", "ANSWER", "MS", "ERROR"]);
        for s in &r.steps {
            for c in &s.tool_calls {
                calls.row(vec![
                    s.step_id.clone(),
                    c.name.clone(),
                    or_dash(&trunc(&c.arguments, 48)),
                    format!("{} B", c.answer_bytes),
                    c.latency_ms.to_string(),
                    or_dash(&trunc(&c.error, 40)),
                ]);
            }
        }
        print!("{}", calls.render());
    }
}

fn run_event_line(e: &v1::RunEvent, z: Zone) -> String {
    let mut line = format!(
        "{} {} #{} {}",
        output::rfc3339(e.at.as_ref(), z).unwrap_or_else(|| "-".into()),
        e.run_id,
        e.seq,
        output::run_state(e.run_state)
    );
    if !e.step_id.is_empty() {
        line.push_str(&format!(
            " step {} {} attempt {}",
            e.step_id,
            output::step_state(e.step_state),
            e.attempt
        ));
        if !e.role.is_empty() {
            line.push_str(&format!(" ({})", e.role));
        }
    }
    if !e.message.is_empty() {
        line.push_str(&format!(" — {}", trunc(&e.message, 200)));
    }
    line
}

/// `concierto run ...`.
pub async fn run(conn: &ConnArgs, cmd: RunCmd) -> Result<(), CliError> {
    let c = conn.connect().await?;
    let z = c.zone;
    match cmd {
        RunCmd::Ls {
            workflow,
            state,
            since,
            until,
            query,
            page_token,
            limit,
            json,
        } => {
            let instant = |flag: &str, v: Option<String>, end: bool| {
                v.map(|v| run_list::parse_instant(&v, z, end))
                    .transpose()
                    .map_err(|e| CliError::Usage(format!("--{flag}: {e}")))
            };
            let filter = RunFilter {
                workflow,
                state: state.map(|s| s.proto() as i32).unwrap_or(0),
                since: instant("since", since, false)?,
                until: instant("until", until, true)?,
                query,
            };
            let page =
                run_list::list_runs(&c, &filter, limit, page_token.unwrap_or_default()).await?;
            let runs = page.runs;
            if json {
                output::print_json(&Value::Array(
                    runs.iter().map(|r| output::run_json(r, z)).collect(),
                ));
            } else if runs.is_empty() {
                println!("no runs");
            } else {
                print!("{}", runs_table(&runs, z).render());
            }
            if !page.next_page_token.is_empty() {
                // On stderr with --json, so the output stays one JSON document.
                let hint = format!(
                    "more runs: add --page-token {} for the next page",
                    page.next_page_token
                );
                if json {
                    eprintln!("{hint}");
                } else {
                    println!("{hint}");
                }
            }
        }
        RunCmd::Retry { id, from_start } => {
            let r = c
                .unary(c.client.clone().retry_run(v1::RetryRunRequest {
                    run_id: id,
                    from_start,
                }))
                .await?;
            println!("{}", r.run_id);
        }
        RunCmd::Show { id, json } => {
            let r = c
                .unary(c.client.clone().get_run(v1::GetRunRequest { run_id: id }))
                .await?;
            let run = r.run.unwrap_or_default();
            if json {
                output::print_json(&output::run_json(&run, z));
            } else {
                print_run(&run, z);
            }
        }
        RunCmd::Start {
            workflow,
            params,
            priority: p,
            id,
        } => {
            let req = v1::StartRunRequest {
                workflow,
                priority: priority(p),
                params: params.into_iter().collect::<HashMap<_, _>>(),
                run_id: id.unwrap_or_default(),
            };
            let r = c.unary(c.client.clone().start_run(req)).await?;
            println!("{}", r.run_id);
        }
        RunCmd::Cancel { id, reason } => {
            let r = c
                .unary(c.client.clone().cancel_run(v1::CancelRunRequest {
                    run_id: id.clone(),
                    reason: reason.unwrap_or_default(),
                }))
                .await?;
            let state = r
                .run
                .map(|r| output::run_state(r.state))
                .unwrap_or_else(|| "-".into());
            println!("{id}: {state}");
        }
        RunCmd::Watch { id, json } => {
            let stream = c
                .unary(c.client.clone().watch_runs(v1::WatchRunsRequest {
                    run_id: id.unwrap_or_default(),
                }))
                .await?;
            follow(&c, stream, |m: v1::WatchRunsResponse| {
                if let Some(e) = m.event {
                    if json {
                        output::print_json_line(&output::run_event_json(&e, z));
                    } else {
                        println!("{}", run_event_line(&e, z));
                    }
                }
            })
            .await?;
        }
    }
    Ok(())
}

/// Prints each message of a server stream until it ends or Ctrl-C.
async fn follow<T>(
    c: &Conn,
    mut stream: tonic::Streaming<T>,
    mut each: impl FnMut(T),
) -> Result<(), CliError> {
    use std::io::Write as _;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = stream.next() => match next {
                None => return Ok(()),
                Some(Ok(m)) => {
                    each(m);
                    let _ = std::io::stdout().flush();
                }
                Some(Err(s)) => return Err(c.error(s)),
            },
        }
    }
}

fn reviewers(r: Option<&v1::GateRequest>) -> String {
    r.map(|r| r.reviewers.join(",")).unwrap_or_default()
}

fn gates_table(gates: &[v1::Gate], z: Zone) -> Table {
    let mut t = Table::new(&[
        "GATE",
        "NAME",
        "STATE",
        "RUN",
        "STEP",
        "ROUND",
        "REVIEWERS",
        "OPENED",
        "DUE",
        "BATCH",
    ]);
    for g in gates {
        let r = g.request.clone().unwrap_or_default();
        t.row(vec![
            r.gate_id.clone(),
            r.gate.clone(),
            output::gate_state(g.state),
            r.run_id.clone(),
            r.step_id.clone(),
            r.round.to_string(),
            reviewers(Some(&r)),
            when(r.opened_at.as_ref(), z),
            when(r.due_at.as_ref(), z),
            batch(g),
        ]);
    }
    t
}

/// A gate's batch: `leads N`, `in <first gate> (N)`, or `-`.
fn batch(g: &v1::Gate) -> String {
    match (g.batch_of.as_str(), g.batch_size) {
        ("", 0) => "-".into(),
        ("", n) => format!("leads {n}"),
        (of, n) => format!("in {of} ({n})"),
    }
}

fn print_gate(g: &v1::Gate, z: Zone) {
    let r = g.request.clone().unwrap_or_default();
    let mut head = Table::new(&["", ""]);
    for (k, v) in [
        ("gate", r.gate_id.clone()),
        ("name", r.gate.clone()),
        ("state", output::gate_state(g.state)),
        ("run", r.run_id.clone()),
        ("step", r.step_id.clone()),
        ("label", or_dash(&r.label)),
        ("round", r.round.to_string()),
        ("reviewers", or_dash(&reviewers(Some(&r)))),
        ("opened", when(r.opened_at.as_ref(), z)),
        ("due", when(r.due_at.as_ref(), z)),
        ("reminders", g.reminders.to_string()),
        ("escalated", g.escalated.to_string()),
        ("batch", batch(g)),
    ] {
        head.row(vec![format!("{k}:"), v]);
    }
    if !r.summary.is_empty() {
        head.row(vec!["summary:".into(), trunc(&r.summary, 200)]);
    }
    let text = head.render();
    print!("{}", text.split_once('\n').map(|x| x.1).unwrap_or(""));
    if !g.decisions.is_empty() {
        println!();
        let mut t = Table::new(&["DECIDED", "DECISION", "REVIEWER", "NOTES"]);
        for d in &g.decisions {
            let reviewer = if d.automatic {
                format!("{} (automatic)", or_dash(&d.reviewer))
            } else {
                or_dash(&d.reviewer)
            };
            t.row(vec![
                when(d.decided_at.as_ref(), z),
                output::gate_decision(d.decision),
                reviewer,
                or_dash(&trunc(&d.notes, 80)),
            ]);
        }
        print!("{}", t.render());
    }
    println!("\n--- content ---");
    println!("{}", r.content.trim_end());
}

fn gate_event_line(g: &v1::Gate, z: Zone) -> String {
    let r = g.request.clone().unwrap_or_default();
    // When it happened: the last decision of a closed gate, else its opening.
    let at = match g.decisions.last() {
        Some(d) if g.state() != v1::GateState::Open => d.decided_at,
        _ => r.opened_at,
    };
    let mut line = format!(
        "{} {} {} {} run {} step {} round {} reviewers {}",
        output::rfc3339(at.as_ref(), z).unwrap_or_else(|| "-".into()),
        r.gate_id,
        r.gate,
        output::gate_state(g.state),
        r.run_id,
        r.step_id,
        r.round,
        or_dash(&reviewers(Some(&r)))
    );
    if g.reminders > 0 {
        line.push_str(&format!(" reminders {}", g.reminders));
    }
    if g.escalated {
        line.push_str(" escalated");
    }
    if let Some(d) = g.decisions.last() {
        line.push_str(&format!(
            " — {} by {}",
            output::gate_decision(d.decision),
            or_dash(&d.reviewer)
        ));
    }
    line
}

async fn decide(
    c: &Conn,
    id: String,
    kind: v1::GateDecisionKind,
    notes: String,
) -> Result<(), CliError> {
    let r = c
        .unary(c.client.clone().decide_gate(v1::DecideGateRequest {
            gate_id: id.clone(),
            decision: kind as i32,
            notes,
        }))
        .await?;
    let g = r.gate.unwrap_or_default();
    let by = g
        .decisions
        .last()
        .map(|d| format!(" by {}", d.reviewer))
        .unwrap_or_default();
    println!("{id}: {}{by}", output::gate_state(g.state));
    Ok(())
}

/// A gate not found: say what `gate show` takes and how to find a run's gates.
fn no_gate_hint(e: CliError, id: &str) -> CliError {
    match e {
        CliError::Status { status, hint: None } if status.code() == tonic::Code::NotFound => {
            CliError::Status {
                status,
                hint: Some(format!(
                    "`gate show` takes a gate id, or the id of a run waiting at a gate; \
                     `concierto gate ls --run {id}` lists that run's gates, \
                     `concierto gate ls --state open` the open ones"
                )),
            }
        }
        other => other,
    }
}

fn required_notes(notes: String, what: &str) -> Result<String, CliError> {
    if notes.trim().is_empty() {
        Err(CliError::Usage(format!(
            "--notes must say why when you {what}"
        )))
    } else {
        Ok(notes)
    }
}

/// `concierto gate ...`.
pub async fn gate(conn: &ConnArgs, cmd: GateCmd) -> Result<(), CliError> {
    // Check what needs no server first.
    let cmd = match cmd {
        GateCmd::Reject { id, notes } => GateCmd::Reject {
            id,
            notes: required_notes(notes, "reject")?,
        },
        GateCmd::RequestChanges { id, notes } => GateCmd::RequestChanges {
            id,
            notes: required_notes(notes, "request changes")?,
        },
        other => other,
    };
    let c = conn.connect().await?;
    let z = c.zone;
    match cmd {
        GateCmd::Ls {
            state,
            run,
            limit,
            json,
        } => {
            let mut gates = Vec::new();
            let mut token = String::new();
            while (gates.len() as u32) < limit {
                let page = c
                    .unary(c.client.clone().list_gates(v1::ListGatesRequest {
                        state: state.map(|s| s.proto() as i32).unwrap_or(0),
                        run_id: run.clone().unwrap_or_default(),
                        page_size: (limit - gates.len() as u32).min(PAGE),
                        page_token: token.clone(),
                    }))
                    .await?;
                gates.extend(page.gates);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            gates.truncate(limit as usize);
            if json {
                output::print_json(&Value::Array(
                    gates.iter().map(|g| output::gate_json(g, z)).collect(),
                ));
            } else if gates.is_empty() {
                println!("no gates");
            } else {
                print!("{}", gates_table(&gates, z).render());
            }
        }
        GateCmd::Show { id, json } => {
            let r = c
                .unary(c.client.clone().get_gate(v1::GetGateRequest {
                    gate_id: id.clone(),
                }))
                .await
                .map_err(|e| no_gate_hint(e, &id))?;
            let g = r.gate.unwrap_or_default();
            if json {
                output::print_json(&output::gate_json(&g, z));
            } else {
                print_gate(&g, z);
            }
        }
        GateCmd::Approve { id, notes } => {
            decide(
                &c,
                id,
                v1::GateDecisionKind::Approve,
                notes.unwrap_or_default(),
            )
            .await?
        }
        GateCmd::Reject { id, notes } => {
            decide(&c, id, v1::GateDecisionKind::Reject, notes).await?
        }
        GateCmd::RequestChanges { id, notes } => {
            decide(&c, id, v1::GateDecisionKind::RequestChanges, notes).await?
        }
        GateCmd::Watch { mine, json } => {
            let stream = c
                .unary(c.client.clone().watch_gates(v1::WatchGatesRequest { mine }))
                .await?;
            follow(&c, stream, |m: v1::WatchGatesResponse| {
                if let Some(g) = m.gate {
                    if json {
                        output::print_json_line(&output::gate_json(&g, z));
                    } else {
                        println!("{}", gate_event_line(&g, z));
                    }
                }
            })
            .await?;
        }
    }
    Ok(())
}

/// `concierto feedback ...`.
pub async fn feedback(conn: &ConnArgs, cmd: FeedbackCmd) -> Result<(), CliError> {
    if let FeedbackCmd::Submit { text, .. } = &cmd
        && text.trim().is_empty()
    {
        return Err(CliError::Usage("--text must not be empty".into()));
    }
    let c = conn.connect().await?;
    let z = c.zone;
    match cmd {
        FeedbackCmd::Submit { text, subject, run } => {
            let r = c
                .unary(c.client.clone().submit_feedback(v1::SubmitFeedbackRequest {
                    subject: subject.unwrap_or_default(),
                    text,
                    run_id: run.unwrap_or_default(),
                }))
                .await?;
            println!("{}", r.feedback_id);
        }
        FeedbackCmd::Ls { limit, json } => {
            let mut entries = Vec::new();
            let mut token = String::new();
            while (entries.len() as u32) < limit {
                let page = c
                    .unary(c.client.clone().list_feedback(v1::ListFeedbackRequest {
                        category: 0,
                        page_size: (limit - entries.len() as u32).min(PAGE),
                        page_token: token.clone(),
                    }))
                    .await?;
                entries.extend(page.entries);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            entries.truncate(limit as usize);
            if json {
                output::print_json(&Value::Array(
                    entries
                        .iter()
                        .map(|e| output::feedback_entry_json(e, z))
                        .collect(),
                ));
            } else if entries.is_empty() {
                println!("no feedback");
            } else {
                let mut t = Table::new(&[
                    "FEEDBACK",
                    "AUTHOR",
                    "CHANNEL",
                    "CATEGORY",
                    "ROUTED TO",
                    "RECEIVED",
                    "ANSWERED",
                    "TEXT",
                ]);
                for e in &entries {
                    let f = e.feedback.clone().unwrap_or_default();
                    let (category, roles) = match &e.routed {
                        Some(r) => (output::feedback_category(r.category), r.roles.join(",")),
                        None => ("-".to_string(), String::new()),
                    };
                    let text = if f.subject.is_empty() {
                        f.text.clone()
                    } else {
                        format!("{}: {}", f.subject, f.text)
                    };
                    t.row(vec![
                        f.feedback_id.clone(),
                        or_dash(&f.author),
                        output::feedback_channel(f.channel),
                        category,
                        or_dash(&roles),
                        when(f.received_at.as_ref(), z),
                        when(e.first_response_at.as_ref(), z),
                        trunc(&text, 50),
                    ]);
                }
                print!("{}", t.render());
            }
        }
        FeedbackCmd::Show { id, json } => {
            let r = c
                .unary(
                    c.client
                        .clone()
                        .get_feedback(v1::GetFeedbackRequest { feedback_id: id }),
                )
                .await?;
            let f = r.feedback.clone().unwrap_or_default();
            let reply = r.reply.clone().unwrap_or_default();
            if json {
                output::print_json(&serde_json::json!({
                    "feedback_id": f.feedback_id,
                    "channel": output::feedback_channel(f.channel),
                    "author": f.author,
                    "subject": f.subject,
                    "text": f.text,
                    "received_at": output::rfc3339(f.received_at.as_ref(), z),
                    "reply": {
                        "state": if reply.state.is_empty() { "unknown" } else { reply.state.as_str() },
                        "text": reply.text,
                        "sent_at": output::rfc3339(reply.sent_at.as_ref(), z),
                        "category": output::feedback_category(reply.category),
                        "roles": reply.roles,
                        "response_seconds": reply.response_seconds,
                        "attempts": reply.attempts.iter().map(|a| serde_json::json!({
                            "attempt": a.attempt,
                            "at": output::rfc3339(a.at.as_ref(), z),
                            "sent": a.sent,
                            "error": a.error,
                        })).collect::<Vec<_>>(),
                    },
                }));
            } else {
                println!("feedback  {}", f.feedback_id);
                println!("channel   {}", output::feedback_channel(f.channel));
                println!("author    {}", or_dash(&f.author));
                println!("received  {}", when(f.received_at.as_ref(), z));
                println!("text      {}", f.text);
                let state = if reply.state.is_empty() {
                    "unknown (no answer from the feedback router)"
                } else {
                    reply.state.as_str()
                };
                println!("reply     {state}");
                if !reply.roles.is_empty() {
                    println!(
                        "routed to {} ({})",
                        reply.roles.join(", "),
                        output::feedback_category(reply.category)
                    );
                }
                if reply.sent_at.is_some() {
                    println!(
                        "sent      {} ({:.0} s after it was received)",
                        when(reply.sent_at.as_ref(), z),
                        reply.response_seconds
                    );
                }
                for a in &reply.attempts {
                    let outcome = if a.sent {
                        "sent".to_string()
                    } else {
                        format!("failed: {}", a.error)
                    };
                    println!(
                        "attempt {} at {}: {outcome}",
                        a.attempt,
                        when(a.at.as_ref(), z)
                    );
                }
                if !reply.text.is_empty() {
                    println!("\n{}", reply.text);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_key_equals_value() {
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_kv("k="), Ok(("k".into(), String::new())));
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("=v").is_err());
    }

    #[test]
    fn an_event_line_says_run_step_and_message() {
        let e = v1::RunEvent {
            run_id: "r1".into(),
            seq: 3,
            run_state: v1::RunState::Running as i32,
            step_id: "draft".into(),
            step_state: v1::StepState::Dispatched as i32,
            attempt: 1,
            role: "content-creator".into(),
            message: "sent".into(),
            ..Default::default()
        };
        assert_eq!(
            run_event_line(&e, Zone::Utc),
            "- r1 #3 RUNNING step draft DISPATCHED attempt 1 (content-creator) — sent"
        );
    }
}
