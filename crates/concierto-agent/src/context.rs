//! Resolving a task's `context` (the step's `context:` list) into inputs
//! before the executor runs.
//!
//! Each `ContextRequest` becomes one `TaskInput` named after its kind
//! (`metrics`, `runs`, `library`, `reports`, `brand`, `params`; a second item
//! of the same kind is `metrics 2`, ...), appended after the task's inputs, in
//! Markdown:
//!
//! | kind | fetched from | what the input says |
//! |---|---|---|
//! | `metrics` | `tracker.metrics.get` | per metric: target, current value, on target, the trend over the window (first → last) and the points in the window |
//! | `runs` | `orchestrator.runs.list` | the workflow's recent runs (this one left out): state, error, each step's state, verdict score and notes, review rounds, gate waits, error and the start of its output |
//! | `library` | `library.search` | the items found: title, kind, source, tags, palette, fonts, notes (features), link |
//! | `reports` | the task's `context:<name>` inputs | the selected standing reports, moved into this one input |
//! | `brand` | the studio's `brand/guide.md` and rules file | the guide, then the rules |
//! | `params` | the task's params | `key: value`, one a line (`builtin.*` test params left out) |
//!
//! **Windows.** A metrics window `since last run` runs from the run's
//! `previous_fire_time` param to its `fire_time` (what a scheduled fire
//! carries), so every step of one run sees the same window; without
//! `previous_fire_time` it is the 24 hours before `fire_time` (or now). A
//! duration window (`6 hours`) ends now.
//!
//! **Bounds.** Every input is cut to its `max_bytes` (at most 64 KiB) on a
//! whole entry where it can, with a last line saying what was cut:
//! `[cut: 12 of 40 runs shown, 8,192 of 31,000 bytes]`.
//!
//! **A bus that does not answer.** Each request waits at most
//! [`ContextOptions::timeout`] (5 s). When it times out or fails, the input
//! says so (`metrics unavailable: tracker did not answer in 5 s`) and the task
//! runs anyway: the data is context for the agent, not the task itself, and a
//! model told that the data is missing can say so in its answer, whereas a
//! failed task would retry into the same outage.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use concierto_bus::{Bus, BusError, ProtoMessage, decode, encode};
use concierto_core::config::context::{
    ContextKind, ContextWindow, DEFAULT_CONTEXT_BYTES, MAX_CONTEXT_BYTES, MAX_CONTEXT_ITEMS,
    MAX_CONTEXT_LIMIT, MIN_CONTEXT_BYTES, parse_window,
};
use concierto_core::subjects;
use concierto_proto::v1::{self, ContextRequest, Task, TaskInput};

use crate::builtin::{BRAND_DIR, RULES_FILES};

/// How long one context request waits for its answer by default.
pub const DEFAULT_CONTEXT_TIMEOUT: Duration = Duration::from_secs(5);
/// Points of one metric shown at most (the latest).
pub const MAX_POINTS_PER_METRIC: usize = 48;
/// Longest brand file read.
pub const MAX_BRAND_FILE_BYTES: u64 = 1024 * 1024;
/// Characters of a step's output a `runs` input quotes.
pub const RUN_OUTPUT_EXCERPT: usize = 240;
/// Longest param value shown, in bytes.
pub const MAX_PARAM_SHOWN_BYTES: usize = 1024;
/// The `params` a scheduled fire carries (see `concierto_scheduler::runs`).
pub const PARAM_FIRE_TIME: &str = "fire_time";
/// See [`PARAM_FIRE_TIME`].
pub const PARAM_PREVIOUS_FIRE_TIME: &str = "previous_fire_time";

/// Where the resolver finds what is not on the bus, and how long it waits.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextOptions {
    /// The studio's brand folder (`<base_dir>/brand`); `None`: `brand`
    /// inputs say the worker has none.
    pub brand_dir: Option<PathBuf>,
    /// How long one request over the bus waits.
    pub timeout: Duration,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            brand_dir: None,
            timeout: DEFAULT_CONTEXT_TIMEOUT,
        }
    }
}

impl ContextOptions {
    /// The options of a studio: its brand folder under `base_dir`.
    pub fn for_studio(studio: &concierto_core::config::Studio) -> Self {
        ContextOptions {
            brand_dir: Some(studio.base_dir.join(BRAND_DIR)),
            timeout: DEFAULT_CONTEXT_TIMEOUT,
        }
    }
}

/// Resolves `task.context` into inputs appended to `task.inputs` (see the
/// module documentation); `now` ends duration windows. Never fails: what
/// cannot be fetched is said in its input. Requests run at once, each bounded
/// by `opts.timeout`.
pub async fn resolve(
    bus: Arc<dyn Bus>,
    opts: &ContextOptions,
    task: &mut Task,
    now: DateTime<Utc>,
) {
    if task.context.is_empty() {
        return;
    }
    let requests: Vec<ContextRequest> = task
        .context
        .iter()
        .take(MAX_CONTEXT_ITEMS)
        .cloned()
        .collect();
    let mut jobs = tokio::task::JoinSet::new();
    let mut local: Vec<(usize, String)> = Vec::new();
    for (i, req) in requests.iter().enumerate() {
        match ContextKind::parse(&req.kind) {
            Some(ContextKind::Metrics) => {
                let (bus, req, opts) = (bus.clone(), req.clone(), opts.clone());
                let params = task.params.clone();
                jobs.spawn(
                    async move { (i, metrics(bus.as_ref(), &opts, &req, &params, now).await) },
                );
            }
            Some(ContextKind::Runs) => {
                let (bus, req, opts) = (bus.clone(), req.clone(), opts.clone());
                let (workflow, run_id) = (task.workflow.clone(), task.run_id.clone());
                jobs.spawn(async move {
                    (i, runs(bus.as_ref(), &opts, &req, &workflow, &run_id).await)
                });
            }
            Some(ContextKind::Library) => {
                let (bus, req, opts) = (bus.clone(), req.clone(), opts.clone());
                jobs.spawn(async move { (i, library(bus.as_ref(), &opts, &req).await) });
            }
            Some(ContextKind::Brand) => local.push((i, brand(opts, req).await)),
            Some(ContextKind::Params) => local.push((i, params(&task.params, req))),
            Some(ContextKind::Reports) => local.push((i, reports(&mut task.inputs, req))),
            None => local.push((
                i,
                format!(
                    "{} unavailable: this worker does not know the context kind {:?}",
                    req.kind, req.kind
                ),
            )),
        }
    }
    let mut rendered: Vec<Option<String>> = vec![None; requests.len()];
    for (i, s) in local {
        rendered[i] = Some(s);
    }
    while let Some(joined) = jobs.join_next().await {
        match joined {
            Ok((i, s)) => rendered[i] = Some(s),
            Err(e) => tracing::warn!(error = %e, "a context fetch stopped"),
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (req, content) in requests.iter().zip(rendered) {
        let n = seen.entry(req.kind.clone()).or_insert(0);
        *n += 1;
        let name = if *n == 1 {
            req.kind.clone()
        } else {
            format!("{} {n}", req.kind)
        };
        let content =
            content.unwrap_or_else(|| format!("{} unavailable: its fetch stopped", req.kind));
        task.inputs.push(TaskInput {
            name,
            content,
            content_type: "text/markdown".into(),
        });
    }
}

/// The byte budget of `req`: its `max_bytes`, within the allowed range.
pub fn budget(req: &ContextRequest) -> usize {
    let b = if req.max_bytes == 0 {
        DEFAULT_CONTEXT_BYTES
    } else {
        req.max_bytes.clamp(MIN_CONTEXT_BYTES, MAX_CONTEXT_BYTES)
    };
    usize::try_from(b).unwrap_or(16 * 1024)
}

fn limit(req: &ContextRequest, default: u32) -> u32 {
    if req.limit == 0 {
        default
    } else {
        req.limit.min(MAX_CONTEXT_LIMIT)
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `header`, then as many whole `entries` as fit in `max_bytes` (joined by
/// blank lines). When some do not fit, the last line says so: `[cut: 12 of
/// 40 runs shown, 8,192 of 31,000 bytes]`. An entry too long on its own is cut
/// inside. The result never exceeds `max_bytes`.
pub fn fit(header: &str, entries: &[String], unit: &str, max_bytes: usize) -> String {
    fit_with(header, entries, unit, max_bytes, "\n\n")
}

/// [`fit`] with entries after the header joined by `sep` (a list: `"\n"`).
pub fn fit_with(
    header: &str,
    entries: &[String],
    unit: &str,
    max_bytes: usize,
    sep: &str,
) -> String {
    // The size of the whole rendering.
    let total_bytes = header.len()
        + entries.iter().map(String::len).sum::<usize>()
        + if entries.is_empty() {
            0
        } else {
            2 + (entries.len() - 1) * sep.len()
        };
    let mut out = header.to_string();
    if total_bytes <= max_bytes {
        for (i, e) in entries.iter().enumerate() {
            out.push_str(if i == 0 { "\n\n" } else { sep });
            out.push_str(e);
        }
        return out;
    }
    // Room for the cut line (its numbers have at most 20 digits each).
    let reserve = 96 + unit.len();
    let room = max_bytes.saturating_sub(reserve);
    let mut out = cut_str(header, room).to_string();
    let mut shown = 0;
    for e in entries {
        let join = if shown == 0 { "\n\n" } else { sep };
        if out.len() + join.len() + e.len() <= room {
            out.push_str(join);
            out.push_str(e);
            shown += 1;
        } else {
            if shown == 0 && out.len() + 2 < room {
                // Not even one whole entry fits: show the start of the first.
                out.push_str("\n\n");
                let left = room - out.len();
                out.push_str(cut_str(e, left));
            }
            break;
        }
    }
    let line = format!(
        "\n\n[cut: {shown} of {} {unit} shown, {} of {} bytes]",
        entries.len(),
        thousands(out.len()),
        thousands(total_bytes)
    );
    out.push_str(&line);
    if out.len() > max_bytes {
        // Only with a budget smaller than the reserve.
        out = cut_str(&out, max_bytes).to_string();
    }
    out
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn param_time(params: &HashMap<String, String>, key: &str) -> Option<DateTime<Utc>> {
    params
        .get(key)
        .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The `[from, to]` of a metrics window, and how to say it.
pub fn metrics_window(
    window: &str,
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>, String) {
    match parse_window(window) {
        Ok(ContextWindow::Last(d)) => {
            let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(1));
            (now - d, now, format!("over the last {}", window.trim()))
        }
        // A bad window cannot pass the studio's validation; it is taken as
        // the default.
        Ok(ContextWindow::SinceLastRun) | Err(_) => {
            let to = param_time(params, PARAM_FIRE_TIME).unwrap_or(now);
            match param_time(params, PARAM_PREVIOUS_FIRE_TIME) {
                Some(from) if from < to => (from, to, "since the last run".to_string()),
                _ => (
                    to - chrono::Duration::hours(24),
                    to,
                    "over the 24 hours before this run (it has no previous scheduled fire)"
                        .to_string(),
                ),
            }
        }
    }
}

/// Why a request got no answer to use.
enum AskError {
    Bus(BusError),
    /// The service answered with its error header.
    Refused(String),
}

/// A request whose answer may carry the error header instead of a message.
async fn ask<Q: ProtoMessage, R: ProtoMessage>(
    bus: &dyn Bus,
    subject: &str,
    q: &Q,
    timeout: Duration,
) -> Result<R, AskError> {
    let reply = bus
        .request(subject, encode(q), timeout)
        .await
        .map_err(AskError::Bus)?;
    if let Some(err) = reply.headers.get(subjects::ERROR_HEADER) {
        return Err(AskError::Refused(err.to_string()));
    }
    decode(&reply).map_err(AskError::Bus)
}

fn unavailable(kind: &str, service: &str, e: &AskError) -> String {
    let e = match e {
        AskError::Refused(why) => {
            return format!("{kind} unavailable: {service} refused the request: {why}");
        }
        AskError::Bus(e) => e,
    };
    match e {
        BusError::Timeout { after, .. } => format!(
            "{kind} unavailable: {service} did not answer in {} s",
            after.as_secs_f64()
        ),
        BusError::NoResponders(_) => {
            format!("{kind} unavailable: no {service} is running")
        }
        other => format!("{kind} unavailable: {service} answered with an error: {other}"),
    }
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(|t| {
        DateTime::from_timestamp(
            t.seconds,
            u32::try_from(t.nanos).unwrap_or(0).min(999_999_999),
        )
    })
}

fn num(v: f64) -> String {
    let r = (v * 10_000.0).round() / 10_000.0;
    r.to_string()
}

async fn metrics(
    bus: &dyn Bus,
    opts: &ContextOptions,
    req: &ContextRequest,
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> String {
    let (from, to, said) = metrics_window(&req.window, params, now);
    let hours = ((now - from).num_seconds().max(0) as u64).div_ceil(3600) + 1;
    // Every metric, filtered here: the tracker refuses a whole request that
    // names a metric it has no sample of yet.
    let q = v1::GetMetricsRequest {
        names: Vec::new(),
        window_hours: u32::try_from(hours.min(400 * 24)).unwrap_or(400 * 24),
    };
    let resp: v1::GetMetricsResponse =
        match ask(bus, subjects::TRACKER_GET_METRICS, &q, opts.timeout).await {
            Ok(r) => r,
            Err(e) => return unavailable("metrics", "tracker", &e),
        };
    let mut header = format!("Metrics {said}: {} → {}.", rfc(from), rfc(to));
    let missing: Vec<&str> = req
        .names
        .iter()
        .filter(|n| !resp.metrics.iter().any(|m| &&m.name == n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        header.push_str(&format!(" No data yet for: {}.", missing.join(", ")));
    }
    let mut entries = Vec::new();
    for m in resp
        .metrics
        .iter()
        .filter(|m| req.names.is_empty() || req.names.contains(&m.name))
    {
        let points: Vec<(DateTime<Utc>, f64)> = m
            .series
            .iter()
            .filter_map(|p| ts(&p.at).map(|t| (t, p.value)))
            .filter(|(t, _)| *t >= from && *t <= to)
            .collect();
        let mut e = format!("### {}", m.name);
        if !m.group.is_empty() {
            e.push_str(&format!(" ({})", m.group));
        }
        e.push_str(&format!(
            "\n- target: {} · current: {} · on target: {}",
            if m.target.is_empty() {
                "none"
            } else {
                &m.target
            },
            num(m.current),
            if m.on_target { "yes" } else { "no" }
        ));
        match (points.first(), points.last()) {
            (Some(first), Some(last)) => {
                let delta = last.1 - first.1;
                e.push_str(&format!(
                    "\n- trend in the window: {} → {} ({}{}, {} points)",
                    num(first.1),
                    num(last.1),
                    if delta >= 0.0 { "+" } else { "" },
                    num(delta),
                    points.len()
                ));
                let skip = points.len().saturating_sub(MAX_POINTS_PER_METRIC);
                e.push_str(&format!(
                    "\n- points{}:",
                    if skip > 0 {
                        format!(" (the last {MAX_POINTS_PER_METRIC} of {})", points.len())
                    } else {
                        String::new()
                    }
                ));
                for (t, v) in &points[skip..] {
                    e.push_str(&format!("\n  - {} {}", rfc(*t), num(*v)));
                }
            }
            _ => e.push_str("\n- no points in the window"),
        }
        entries.push(e);
    }
    if entries.is_empty() {
        return format!("{header}\n\nThe tracker has no such metric yet.");
    }
    fit(&header, &entries, "metrics", budget(req))
}

async fn runs(
    bus: &dyn Bus,
    opts: &ContextOptions,
    req: &ContextRequest,
    this_workflow: &str,
    this_run: &str,
) -> String {
    let workflow = if req.workflow.trim().is_empty() {
        this_workflow.to_string()
    } else {
        req.workflow.trim().to_string()
    };
    let want = limit(req, 5);
    let q = v1::ListRunsRequest {
        workflow: workflow.clone(),
        page_size: want + 1,
        ..Default::default()
    };
    let resp: v1::ListRunsResponse =
        match ask(bus, subjects::ORCHESTRATOR_LIST_RUNS, &q, opts.timeout).await {
            Ok(r) => r,
            Err(e) => return unavailable("runs", "orchestrator", &e),
        };
    let list: Vec<&v1::Run> = resp
        .runs
        .iter()
        .filter(|r| r.run_id != this_run)
        .take(usize::try_from(want).unwrap_or(5))
        .collect();
    let header = format!("Recent runs of workflow {workflow}, newest first.");
    if list.is_empty() {
        return format!("{header}\n\nNo earlier run.");
    }
    let entries: Vec<String> = list.iter().map(|r| run_entry(r)).collect();
    fit(&header, &entries, "runs", budget(req))
}

fn run_entry(r: &v1::Run) -> String {
    let state = v1::RunState::try_from(r.state)
        .map(|s| s.as_str_name().trim_start_matches("RUN_STATE_").to_string())
        .unwrap_or_default();
    let mut e = format!("### {} — {state}", r.run_id);
    if let Some(t) = ts(&r.created_at) {
        e.push_str(&format!("\n- started {}", rfc(t)));
    }
    if !r.trigger.is_empty() {
        e.push_str(&format!(" by trigger {}", r.trigger));
    }
    if !r.error.is_empty() {
        e.push_str(&format!("\n- error: {}", cut_str(&r.error, 400)));
    }
    for s in &r.steps {
        let st = v1::StepState::try_from(s.state)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("STEP_STATE_")
                    .to_string()
            })
            .unwrap_or_default();
        e.push_str(&format!(
            "\n- step {} ({}): {st}, attempt {}",
            s.step_id, s.role, s.attempt
        ));
        if st == "WAITING_GATE" {
            e.push_str(", waiting for people at a quality gate");
        }
        if let Some(v) = &s.verdict {
            e.push_str(&format!(
                ", verdict {} score {}",
                if v.pass { "pass" } else { "fail" },
                num(v.score)
            ));
            if !v.notes.trim().is_empty() {
                e.push_str(&format!(", notes: {}", cut_str(v.notes.trim(), 300)));
            }
        }
        if s.review_rounds > 0 {
            e.push_str(&format!(", {} review rounds", s.review_rounds));
        }
        if !s.error.is_empty() {
            e.push_str(&format!(", error: {}", cut_str(&s.error, 300)));
        }
        let out = s.output.trim();
        if !out.is_empty() {
            let excerpt = cut_str(out, RUN_OUTPUT_EXCERPT).replace('\n', " ");
            e.push_str(&format!(
                "\n  output: {excerpt}{}",
                if out.len() > RUN_OUTPUT_EXCERPT {
                    "…"
                } else {
                    ""
                }
            ));
        }
    }
    e
}

async fn library(bus: &dyn Bus, opts: &ContextOptions, req: &ContextRequest) -> String {
    let q = v1::SearchContentRequest {
        query: req.query.clone(),
        page_size: limit(req, 10),
        ..Default::default()
    };
    let resp: v1::SearchContentResponse =
        match ask(bus, subjects::LIBRARY_SEARCH, &q, opts.timeout).await {
            Ok(r) => r,
            Err(e) => return unavailable("library", "content library", &e),
        };
    let header = format!("Content library items for {:?}, best first.", req.query);
    if resp.items.is_empty() {
        return format!("{header}\n\nNothing matched.");
    }
    let entries: Vec<String> = resp
        .items
        .iter()
        .map(|i| {
            let mut e = format!(
                "### {}",
                if i.title.trim().is_empty() {
                    &i.item_id
                } else {
                    i.title.trim()
                }
            );
            e.push_str(&format!("\n- kind: {} · source: {}", i.kind, i.source));
            if !i.tags.is_empty() {
                e.push_str(&format!("\n- tags: {}", i.tags.join(", ")));
            }
            if !i.palette.is_empty() {
                let p: Vec<String> = i
                    .palette
                    .iter()
                    .map(|c| format!("{} ({:.0}%)", c.hex, c.share * 100.0))
                    .collect();
                e.push_str(&format!("\n- palette: {}", p.join(", ")));
            }
            if !i.fonts.is_empty() {
                e.push_str(&format!("\n- fonts: {}", i.fonts.join(", ")));
            }
            let mut features: Vec<_> = i.features.iter().collect();
            features.sort();
            for (k, v) in features.into_iter().take(8) {
                e.push_str(&format!("\n- {k}: {}", cut_str(v, 300)));
            }
            if !i.text.trim().is_empty() {
                e.push_str(&format!(
                    "\n- notes: {}",
                    cut_str(i.text.trim(), 400).replace('\n', " ")
                ));
            }
            if !i.url.is_empty() {
                e.push_str(&format!("\n- link: {}", i.url));
            }
            e
        })
        .collect();
    fit(&header, &entries, "items", budget(req))
}

/// Moves the selected `context:<name>` inputs out of `inputs` into one text.
fn reports(inputs: &mut Vec<TaskInput>, req: &ContextRequest) -> String {
    let wanted = |name: &str| req.names.is_empty() || req.names.iter().any(|n| n == name);
    let mut entries = Vec::new();
    let mut found = Vec::new();
    inputs.retain(|i| match i.name.strip_prefix("context:") {
        Some(name) if wanted(name) => {
            entries.push(format!("### {name}\n\n{}", i.content.trim()));
            found.push(name.to_string());
            false
        }
        _ => true,
    });
    let missing: Vec<&String> = req.names.iter().filter(|n| !found.contains(n)).collect();
    let mut header = "The latest standing reports kept for this role.".to_string();
    if !missing.is_empty() {
        header.push_str(&format!(
            " Not kept yet: {}.",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if entries.is_empty() {
        return format!("{header}\n\nNo report is kept for this role yet.");
    }
    fit(&header, &entries, "reports", budget(req))
}

async fn read_bounded(path: &std::path::Path) -> Option<Result<String, String>> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    if meta.len() > MAX_BRAND_FILE_BYTES {
        return Some(Err(format!(
            "{} is {} bytes; at most {MAX_BRAND_FILE_BYTES} are read",
            path.display(),
            meta.len()
        )));
    }
    Some(
        tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display())),
    )
}

async fn brand(opts: &ContextOptions, req: &ContextRequest) -> String {
    let Some(dir) = &opts.brand_dir else {
        return "brand unavailable: this worker was started without the studio's brand folder"
            .to_string();
    };
    let mut entries = Vec::new();
    match read_bounded(&dir.join("guide.md")).await {
        Some(Ok(t)) => entries.push(format!("### Brand guide\n\n{}", t.trim())),
        Some(Err(e)) => entries.push(format!("### Brand guide\n\nunavailable: {e}")),
        None => {}
    }
    for name in RULES_FILES {
        match read_bounded(&dir.join(name)).await {
            Some(Ok(t)) => {
                entries.push(format!(
                    "### Brand rules ({name})\n\n```\n{}\n```",
                    t.trim()
                ));
                break;
            }
            Some(Err(e)) => {
                entries.push(format!("### Brand rules\n\nunavailable: {e}"));
                break;
            }
            None => {}
        }
    }
    if entries.is_empty() {
        return format!(
            "brand unavailable: no guide.md or rules file in {}",
            dir.display()
        );
    }
    fit("The studio's brand.", &entries, "parts", budget(req))
}

fn params(p: &HashMap<String, String>, req: &ContextRequest) -> String {
    let mut keys: Vec<&String> = p.keys().filter(|k| !k.starts_with("builtin.")).collect();
    keys.sort();
    if keys.is_empty() {
        return "This run has no params.".to_string();
    }
    let entries: Vec<String> = keys
        .into_iter()
        .map(|k| {
            let v = p.get(k).map(String::as_str).unwrap_or_default();
            let shown = cut_str(v, MAX_PARAM_SHOWN_BYTES);
            format!(
                "- {k}: {shown}{}",
                if shown.len() < v.len() {
                    " …(cut)"
                } else {
                    ""
                }
            )
        })
        .collect();
    fit_with("The run's params.", &entries, "params", budget(req), "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_whole_entries_and_says_what_was_cut() {
        let entries: Vec<String> = (0..40)
            .map(|i| format!("### run {i}\n{}", "x".repeat(700)))
            .collect();
        let out = fit("Recent runs.", &entries, "runs", 8192);
        assert!(out.len() <= 8192, "{}", out.len());
        let shown = out.matches("### run ").count();
        assert!((9..40).contains(&shown), "{shown}");
        let total = "Recent runs.".len() + entries.iter().map(|e| e.len() + 2).sum::<usize>();
        let line = format!(
            "[cut: {shown} of 40 runs shown, {} of {} bytes]",
            thousands(out.rfind("\n\n[cut").unwrap_or(0)),
            thousands(total)
        );
        assert!(out.ends_with(&line), "{out:?} should end with {line:?}");
        // Whole entries only: the last shown one is complete.
        assert!(out.contains(&format!("### run {}\n{}", shown - 1, "x".repeat(700))));
    }

    #[test]
    fn fit_leaves_what_fits_alone_and_cuts_a_huge_entry_inside() {
        let small = vec!["a".to_string(), "b".to_string()];
        assert_eq!(fit("H", &small, "x", 1024), "H\n\na\n\nb");
        let huge = vec!["é".repeat(10_000)];
        let out = fit("H", &huge, "parts", 1024);
        assert!(out.len() <= 1024);
        assert!(out.contains("[cut: 0 of 1 parts shown, "), "{out}");
        assert!(out.ends_with(" of 20,003 bytes]"), "{out}");
        assert!(
            out.starts_with("H\n\néé"),
            "the start of the entry is shown"
        );
    }

    #[test]
    fn windows_follow_the_fire() {
        let now = DateTime::parse_from_rfc3339("2026-03-10T13:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut p = HashMap::new();
        p.insert("fire_time".to_string(), "2026-03-10T12:00:00Z".to_string());
        p.insert(
            "previous_fire_time".to_string(),
            "2026-03-10T06:00:00Z".to_string(),
        );
        let (from, to, _) = metrics_window("since last run", &p, now);
        assert_eq!(
            (rfc(from), rfc(to)),
            ("2026-03-10T06:00:00Z".into(), "2026-03-10T12:00:00Z".into())
        );
        let (from, to, _) = metrics_window("7 days", &p, now);
        assert_eq!(
            (rfc(from), rfc(to)),
            ("2026-03-03T13:00:00Z".into(), rfc(now))
        );
        p.remove("previous_fire_time");
        let (from, _, said) = metrics_window("since last run", &p, now);
        assert_eq!(rfc(from), "2026-03-09T12:00:00Z");
        assert!(said.contains("24 hours"));
    }

    #[test]
    fn params_are_listed_sorted_without_test_params_and_bounded() {
        let mut p = HashMap::new();
        p.insert("brief".to_string(), "Launch the spring range".to_string());
        p.insert("builtin.sleep_ms".to_string(), "5".to_string());
        p.insert("audience".to_string(), "v".repeat(5000));
        let req = ContextRequest {
            kind: "params".into(),
            max_bytes: 2048,
            ..Default::default()
        };
        let out = params(&p, &req);
        assert!(out.starts_with("The run's params.\n\n- audience: vvv"));
        assert!(out.contains("…(cut)"));
        assert!(out.contains("- brief: Launch the spring range"));
        assert!(!out.contains("builtin.sleep_ms"));
        assert!(out.len() <= 2048);
    }

    #[test]
    fn reports_move_the_selected_context_inputs() {
        let mut inputs = vec![
            TaskInput {
                name: "trigger".into(),
                content: "t".into(),
                content_type: "text/plain".into(),
            },
            TaskInput {
                name: "context:trend-report".into(),
                content: "Trends: paper".into(),
                content_type: "text/markdown".into(),
            },
            TaskInput {
                name: "context:campaign-insights:x".into(),
                content: "CI".into(),
                content_type: "text/markdown".into(),
            },
        ];
        let req = ContextRequest {
            kind: "reports".into(),
            names: vec!["trend-report".into(), "weekly".into()],
            ..Default::default()
        };
        let out = reports(&mut inputs, &req);
        assert!(out.contains("### trend-report\n\nTrends: paper"), "{out}");
        assert!(out.contains("Not kept yet: weekly."), "{out}");
        assert_eq!(inputs.len(), 2, "the selected report left the inputs");
        assert!(
            inputs
                .iter()
                .any(|i| i.name == "context:campaign-insights:x")
        );
    }

    #[tokio::test]
    async fn brand_params_and_reports_resolve_in_order_and_are_cut() {
        let bus: Arc<dyn Bus> = Arc::new(concierto_bus::EmbeddedBus::default());
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/brand");
        let opts = ContextOptions {
            brand_dir: Some(dir),
            timeout: Duration::from_millis(200),
        };
        let req = |kind: &str, max_bytes: u32| ContextRequest {
            kind: kind.into(),
            max_bytes,
            ..Default::default()
        };
        let mut task = Task {
            inputs: vec![TaskInput {
                name: "context:trend-report".into(),
                content: "Paper textures are up.".into(),
                content_type: "text/markdown".into(),
            }],
            context: vec![
                req("brand", 0),
                req("brand", 600),
                req("params", 0),
                req("reports", 0),
                req("weather", 0),
            ],
            ..Default::default()
        };
        task.params.insert("brief".into(), "Refill week".into());
        resolve(bus, &opts, &mut task, Utc::now()).await;
        let names: Vec<&str> = task.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["brand", "brand 2", "params", "reports", "weather"]);
        let brand = &task.inputs[0].content;
        assert!(
            brand.contains("### Brand guide\n\n# Concierto Studio brand guide"),
            "{brand}"
        );
        assert!(brand.contains("### Brand rules (rules.yaml)"), "{brand}");
        let cut = &task.inputs[1].content;
        assert!(cut.len() <= 600, "{}", cut.len());
        assert!(cut.contains("[cut: 0 of 2 parts shown, "), "{cut}");
        assert_eq!(
            task.inputs[2].content,
            "The run's params.\n\n- brief: Refill week"
        );
        assert!(
            task.inputs[3]
                .content
                .contains("### trend-report\n\nPaper textures are up.")
        );
        assert!(task.inputs[4].content.starts_with("weather unavailable: "));
    }
}
