//! A workflow step's `context:` list: the data the worker fetches over the bus
//! and hands to the executor as labelled inputs before it runs.
//!
//! ```yaml
//! context:
//!   - metrics: [engagement_rate, daily_output]   # `all` or [] = every metric
//!     window: "since last run"                    # or a duration; the default
//!   - runs: { workflow: daily-content-pipeline, limit: 5 }  # default: this run's workflow, 5
//!   - library: { query: "sustainable packaging", limit: 10 }
//!   - reports: [trend-report]                     # `context:<name>` inputs; [] = all
//!   - brand
//!   - params
//! ```
//!
//! Every item may also say `max_bytes:` (default [`DEFAULT_CONTEXT_BYTES`],
//! at most [`MAX_CONTEXT_BYTES`]): the rendered input is cut to it and says
//! what was cut.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::spans::{child, item};
use super::walk::{Walker, describe};
use crate::grammar::parse_duration;

/// The window that runs from the trigger's previous fire to this one.
pub const SINCE_LAST_RUN: &str = "since last run";
/// Rendered size of one context input when the step does not say.
pub const DEFAULT_CONTEXT_BYTES: u32 = 16 * 1024;
/// The most `max_bytes` may be.
pub const MAX_CONTEXT_BYTES: u32 = 64 * 1024;
/// The least `max_bytes` may be.
pub const MIN_CONTEXT_BYTES: u32 = 256;
/// The most `limit` may be (runs, library items).
pub const MAX_CONTEXT_LIMIT: u32 = 50;
/// Recent runs shown when the step does not say.
pub const DEFAULT_RUNS_LIMIT: u32 = 5;
/// Library items shown when the step does not say.
pub const DEFAULT_LIBRARY_LIMIT: u32 = 10;
/// The most items a step's `context:` may have.
pub const MAX_CONTEXT_ITEMS: usize = 12;
/// The longest window a metrics item may ask for (400 days).
pub const MAX_CONTEXT_WINDOW: Duration = Duration::from_secs(400 * 86_400);

/// What a context item fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContextKind {
    /// Progress metrics over a window (`tracker.metrics.get`).
    Metrics,
    /// Recent runs of a workflow (`orchestrator.runs.list`).
    Runs,
    /// A content-library search (`library.search`).
    Library,
    /// The role's standing reports (`context:<name>` inputs).
    Reports,
    /// The studio's brand guide and rules.
    Brand,
    /// The run's params (what a person or the trigger passed).
    Params,
}

impl ContextKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [ContextKind; 6] = [
        ContextKind::Metrics,
        ContextKind::Runs,
        ContextKind::Library,
        ContextKind::Reports,
        ContextKind::Brand,
        ContextKind::Params,
    ];

    /// The name in the file, on the wire and of the input.
    pub fn as_str(self) -> &'static str {
        match self {
            ContextKind::Metrics => "metrics",
            ContextKind::Runs => "runs",
            ContextKind::Library => "library",
            ContextKind::Reports => "reports",
            ContextKind::Brand => "brand",
            ContextKind::Params => "params",
        }
    }

    /// The kind named `s` (exact, lower case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The option keys an item of this kind may have besides its kind key.
    fn options(self) -> &'static [&'static str] {
        match self {
            ContextKind::Metrics => &["names", "window", "max_bytes"],
            ContextKind::Runs => &["workflow", "limit", "max_bytes"],
            ContextKind::Library => &["query", "limit", "max_bytes"],
            ContextKind::Reports => &["names", "max_bytes"],
            ContextKind::Brand | ContextKind::Params => &["max_bytes"],
        }
    }
}

/// One item of a step's `context:` list (the file's form of
/// `v1::ContextRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextItem {
    /// What it fetches.
    pub kind: ContextKind,
    /// metrics: metric names; reports: report names. Empty: every one.
    #[serde(default)]
    pub names: Vec<String>,
    /// metrics: [`SINCE_LAST_RUN`] or a duration as written (`6 hours`).
    #[serde(default)]
    pub window: String,
    /// runs: the workflow (empty: the run's own).
    #[serde(default)]
    pub workflow: String,
    /// library: the search query.
    #[serde(default)]
    pub query: String,
    /// runs, library: how many at most (0 for the other kinds).
    #[serde(default)]
    pub limit: u32,
    /// The most bytes the rendered input may have.
    #[serde(default = "default_bytes")]
    pub max_bytes: u32,
}

fn default_bytes() -> u32 {
    DEFAULT_CONTEXT_BYTES
}

impl ContextItem {
    /// An item of `kind` with every default.
    pub fn new(kind: ContextKind) -> Self {
        ContextItem {
            kind,
            names: Vec::new(),
            window: if kind == ContextKind::Metrics {
                SINCE_LAST_RUN.to_string()
            } else {
                String::new()
            },
            workflow: String::new(),
            query: String::new(),
            limit: match kind {
                ContextKind::Runs => DEFAULT_RUNS_LIMIT,
                ContextKind::Library => DEFAULT_LIBRARY_LIMIT,
                _ => 0,
            },
            max_bytes: DEFAULT_CONTEXT_BYTES,
        }
    }
}

/// What a metrics window says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextWindow {
    /// From the trigger's previous fire to this one.
    SinceLastRun,
    /// This long before now.
    Last(Duration),
}

/// Parses a metrics window: [`SINCE_LAST_RUN`] (any case, spaces or `_`) or a
/// duration of at most [`MAX_CONTEXT_WINDOW`].
pub fn parse_window(s: &str) -> Result<ContextWindow, String> {
    let norm = s
        .trim()
        .to_ascii_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if norm.is_empty() || norm == SINCE_LAST_RUN {
        return Ok(ContextWindow::SinceLastRun);
    }
    let d = parse_duration(s).map_err(|e| {
        format!("bad window: {e}; write \"{SINCE_LAST_RUN}\" or a duration such as \"6 hours\"")
    })?;
    if d.is_zero() || d > MAX_CONTEXT_WINDOW {
        return Err(format!(
            "bad window {s:?}: it must be more than zero and at most 400 days"
        ));
    }
    Ok(ContextWindow::Last(d))
}

/// Parses a step's `context:` value at path `p` (`...steps[1].context`).
pub(crate) fn step_context(w: &mut Walker<'_>, v: Option<&Value>, p: &str) -> Vec<ContextItem> {
    let items = match v {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            w.error(
                p,
                format!(
                    "must be a list of context items (metrics, runs, library, reports, brand, params), found {}",
                    describe(other)
                ),
            );
            return Vec::new();
        }
    };
    if items.len() > MAX_CONTEXT_ITEMS {
        w.error(
            p,
            format!(
                "has {} items; a step may ask for at most {MAX_CONTEXT_ITEMS}",
                items.len()
            ),
        );
    }
    let mut out = Vec::new();
    for (i, v) in items.iter().enumerate().take(MAX_CONTEXT_ITEMS) {
        if let Some(c) = context_item(w, v, &item(p, i)) {
            out.push(c);
        }
    }
    out
}

fn kinds_list() -> String {
    ContextKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn context_item(w: &mut Walker<'_>, v: &Value, p: &str) -> Option<ContextItem> {
    let unknown = |w: &mut Walker<'_>, path: &str, name: &str| {
        w.error(
            path,
            format!(
                "unknown context kind `{name}`; expected one of: {}",
                kinds_list()
            ),
        );
    };
    let m = match v {
        Value::String(s) => {
            return match ContextKind::parse(s.trim()) {
                Some(kind) => Some(ContextItem::new(kind)),
                None => {
                    unknown(w, p, s.trim());
                    None
                }
            };
        }
        Value::Object(m) => m,
        other => {
            w.error(
                p,
                format!(
                    "must be a kind (`brand`) or a map (`metrics: [...]`), found {}",
                    describe(other)
                ),
            );
            return None;
        }
    };
    let kinds: Vec<(ContextKind, &String)> = m
        .keys()
        .filter_map(|k| ContextKind::parse(k).map(|kind| (kind, k)))
        .collect();
    let (kind, key) = match kinds.as_slice() {
        [one] => *one,
        [] => {
            let first = m.keys().next().map(String::as_str).unwrap_or("");
            unknown(w, &child(p, first), first);
            return None;
        }
        many => {
            w.error(
                p,
                format!(
                    "names {} kinds ({}); write one item per kind",
                    many.len(),
                    many.iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            return None;
        }
    };
    let mut allowed = vec![key.as_str()];
    allowed.extend_from_slice(kind.options());
    w.known_keys(m, p, &allowed);
    let mut c = ContextItem::new(kind);
    let kp = child(p, key);
    // The kind's own value: names, a workflow / query, or a map of options.
    match (m.get(key), kind) {
        (None | Some(Value::Null), _) => {}
        (Some(Value::Object(opts)), _) => {
            let mut inner = vec![];
            inner.extend_from_slice(kind.options());
            w.known_keys(opts, &kp, &inner);
            options(w, &mut c, opts, &kp);
        }
        (Some(Value::String(s)), ContextKind::Metrics | ContextKind::Reports) => {
            if !s.trim().eq_ignore_ascii_case("all") {
                c.names = vec![s.trim().to_string()];
            }
        }
        (Some(Value::Array(_)), ContextKind::Metrics | ContextKind::Reports) => {
            c.names = w.strings(m, key, p, false);
        }
        (Some(Value::String(s)), ContextKind::Runs) => c.workflow = s.trim().to_string(),
        (Some(Value::String(s)), ContextKind::Library) => c.query = s.trim().to_string(),
        (Some(other), _) => {
            w.error(
                &kp,
                format!(
                    "must be {} or a map of its options ({}), found {}",
                    match kind {
                        ContextKind::Metrics | ContextKind::Reports => "a list of names, `all`,",
                        ContextKind::Runs => "a workflow name",
                        ContextKind::Library => "a search query",
                        ContextKind::Brand | ContextKind::Params => "empty",
                    },
                    kind.options().join(", "),
                    describe(other)
                ),
            );
        }
    }
    // Options written beside the kind key.
    options(w, &mut c, m, p);
    if kind == ContextKind::Library && c.query.trim().is_empty() {
        w.error(&kp, "a library item needs a `query`");
    }
    c.names.retain(|n| !n.trim().is_empty());
    Some(c)
}

/// Reads the options of `kind` in `m` (at `p`) into `c`.
fn options(w: &mut Walker<'_>, c: &mut ContextItem, m: &Map<String, Value>, p: &str) {
    if m.contains_key("names") {
        let names = w.strings(m, "names", p, false);
        if !(names.len() == 1 && names[0].eq_ignore_ascii_case("all")) {
            c.names = names;
        }
    }
    if let Some(s) = w.opt_string(m, "window", p) {
        match parse_window(&s) {
            Ok(ContextWindow::SinceLastRun) => c.window = SINCE_LAST_RUN.to_string(),
            Ok(ContextWindow::Last(_)) => c.window = s.trim().to_string(),
            Err(e) => w.error(&child(p, "window"), e),
        }
    }
    if let Some(s) = w.opt_string(m, "workflow", p) {
        c.workflow = s.trim().to_string();
    }
    if let Some(s) = w.opt_string(m, "query", p) {
        c.query = s.trim().to_string();
    }
    if m.contains_key("limit") {
        let n = w.count(m, "limit", p, u64::from(c.limit));
        if n == 0 || n > u64::from(MAX_CONTEXT_LIMIT) {
            w.error(
                &child(p, "limit"),
                format!("bad limit {n}: it must be from 1 to {MAX_CONTEXT_LIMIT}"),
            );
        } else {
            c.limit = u32::try_from(n).unwrap_or(MAX_CONTEXT_LIMIT);
        }
    }
    if m.contains_key("max_bytes") {
        let n = w.count(m, "max_bytes", p, u64::from(c.max_bytes));
        if n < u64::from(MIN_CONTEXT_BYTES) || n > u64::from(MAX_CONTEXT_BYTES) {
            w.error(
                &child(p, "max_bytes"),
                format!(
                    "bad max_bytes {n}: it must be from {MIN_CONTEXT_BYTES} to {MAX_CONTEXT_BYTES} (64 KiB)"
                ),
            );
        } else {
            c.max_bytes = u32::try_from(n).unwrap_or(MAX_CONTEXT_BYTES);
        }
    }
}

/// Checks what a step's context refers to once every workflow is known: a
/// `runs` item's workflow must exist.
pub(crate) fn check_refs(
    w: &mut Walker<'_>,
    step_path: &str,
    context: &[ContextItem],
    workflows: &indexmap::IndexMap<String, super::model::Workflow>,
) {
    let list = child(step_path, "context");
    if w.spans.has(&item(&list, context.len())) {
        // An item failed to parse (and is reported): the indices no longer
        // match the file's.
        return;
    }
    for (i, c) in context.iter().enumerate() {
        if c.kind == ContextKind::Runs
            && !c.workflow.is_empty()
            && !workflows.contains_key(&c.workflow)
        {
            w.error(
                &child(&item(&list, i), "runs"),
                format!(
                    "unknown workflow {:?}; expected one of: {}",
                    c.workflow,
                    workflows.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Checked, Severity, check_with_env};

    /// Checks a studio with one workflow whose only step has `context` (YAML
    /// indented under `context:`).
    fn check_context(context: &str) -> (tempfile::TempDir, Checked) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("concierto.yaml");
        let agents =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
        let text = format!(
            "agents:\n  paths: [\"{}\"]\nworkflows:\n  wf:\n    steps:\n      - id: s\n        role: performance-benchmarker\n        task: t\n        context:\n{context}",
            agents.display()
        );
        std::fs::write(&file, text).expect("write");
        let checked = check_with_env(&file, Vec::new());
        (dir, checked)
    }

    fn items(c: &Checked) -> Vec<ContextItem> {
        let errors: Vec<String> = c
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        let studio = c
            .studio
            .as_ref()
            .unwrap_or_else(|| panic!("loads: {errors:?}"));
        studio.workflows["wf"].steps[0].context.clone()
    }

    fn errors(c: &Checked) -> String {
        c.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_kind_parses_with_its_defaults() {
        let (_d, c) = check_context(
            "          - metrics: [engagement_rate, daily_output]
            window: \"since last run\"
          - metrics: all
            window: 7 days
            max_bytes: 4096
          - runs: { workflow: wf, limit: 3 }
          - runs
          - library: { query: \"sustainable packaging\", limit: 10 }
          - reports: [trend-report]
          - brand
          - params
",
        );
        let got = items(&c);
        assert_eq!(got.len(), 8);
        assert_eq!(got[0].kind, ContextKind::Metrics);
        assert_eq!(got[0].names, ["engagement_rate", "daily_output"]);
        assert_eq!(got[0].window, SINCE_LAST_RUN);
        assert_eq!(got[0].max_bytes, DEFAULT_CONTEXT_BYTES);
        assert!(got[1].names.is_empty(), "`all` is every metric");
        assert_eq!(got[1].window, "7 days");
        assert_eq!(got[1].max_bytes, 4096);
        assert_eq!((got[2].workflow.as_str(), got[2].limit), ("wf", 3));
        assert_eq!(
            (got[3].workflow.as_str(), got[3].limit),
            ("", DEFAULT_RUNS_LIMIT)
        );
        assert_eq!(got[4].query, "sustainable packaging");
        assert_eq!(got[4].limit, 10);
        assert_eq!(got[5].names, ["trend-report"]);
        assert_eq!(got[6], ContextItem::new(ContextKind::Brand));
        assert_eq!(got[7].kind, ContextKind::Params);
    }

    #[test]
    fn bad_items_are_problems_with_their_lines() {
        let (_d, c) = check_context(
            "          - weather
          - metrics: [a]
            window: fortnightly
          - runs: { limit: 0 }
          - library: { limit: 5 }
          - brand: { max_bytes: 1000000 }
          - reports: [x]
            query: nope
",
        );
        assert!(c.studio.is_none(), "a bad context is an error");
        let e = errors(&c);
        for needle in [
            "context[0]",
            "unknown context kind `weather`",
            "context[1].window",
            "bad window",
            "context[2].runs.limit",
            "bad limit 0",
            "a library item needs a `query`",
            "bad max_bytes 1000000",
            "unknown key `query`",
        ] {
            assert!(e.contains(needle), "{needle:?} missing from:\n{e}");
        }
        // Every problem names the line of the file it is on (the step starts
        // on line 6; the first item is on line 10).
        let weather = c
            .problems
            .iter()
            .find(|p| p.to_string().contains("weather"))
            .expect("weather problem");
        assert_eq!(weather.line, Some(10), "{weather}");
    }

    #[test]
    fn a_runs_item_names_a_known_workflow() {
        let (_d, c) = check_context("          - brand\n          - runs: { workflow: nowhere }\n");
        let e = errors(&c);
        assert!(
            e.contains(":11: error: workflows.wf.steps[0].context[1].runs: unknown workflow \"nowhere\"; expected one of: wf"),
            "{e}"
        );
    }

    #[test]
    fn windows_parse() {
        assert_eq!(
            parse_window("since last run"),
            Ok(ContextWindow::SinceLastRun)
        );
        assert_eq!(
            parse_window("Since_Last_Run"),
            Ok(ContextWindow::SinceLastRun)
        );
        assert_eq!(
            parse_window("6 hours"),
            Ok(ContextWindow::Last(Duration::from_secs(6 * 3600)))
        );
        assert!(parse_window("1000 days").is_err());
        assert!(parse_window("soon").is_err());
    }
}
