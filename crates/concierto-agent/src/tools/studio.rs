//! Concierto's own tools, over the bus: `library_search` (the ingest
//! service's `library.search`), `metrics_get` (the tracker's
//! `tracker.metrics.get`), `runs_recent` (the orchestrator's
//! `orchestrator.runs.list`), and `brand_check` (the brand rules, in process).
//! Answers are compact JSON, bounded; a service that does not answer within
//! [`BUS_TIMEOUT`] is an error the model sees.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use concierto_bus::{Bus, BusError, ProtoMessage, decode, encode};
use concierto_core::subjects;
use concierto_proto::v1;
use serde_json::{Value, json};

use super::args::{self, cut, schema};
use super::{Tool, ToolCx, ToolError, ToolSpec};
use crate::builtin::BrandRules;

/// A bus, shown as `Bus` when debugged.
#[derive(Clone)]
pub(crate) struct BusHandle(pub Arc<dyn Bus>);

impl std::fmt::Debug for BusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bus")
    }
}

/// How long a tool waits for a service's answer.
pub const BUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Most characters of an item's text, a note or a description in an answer.
pub const SNIPPET_CHARS: usize = 400;
/// Most points of a metric's series in an answer (the latest ones).
pub const MAX_POINTS: usize = 48;
/// Longest text `brand_check` scores.
pub const MAX_BRAND_TEXT: usize = 64 * 1024;

/// A request to the service `owner` on `subject`; no answer, a timeout and
/// the answer's error header become a [`ToolError`] naming the service.
pub async fn ask<Q: ProtoMessage, R: ProtoMessage>(
    bus: &dyn Bus,
    owner: &str,
    subject: &str,
    req: &Q,
    timeout: Duration,
) -> Result<R, ToolError> {
    let reply = bus
        .request(subject, encode(req), timeout)
        .await
        .map_err(|e| match e {
            BusError::NoResponders(_) => ToolError::new(format!(
                "the {owner} is not running (nobody answers on the bus); try again later"
            )),
            BusError::Timeout { .. } => {
                ToolError::new(format!("the {owner} did not answer within {timeout:?}"))
            }
            other => ToolError::new(format!("the {owner} could not be asked: {other}")),
        })?;
    if let Some(err) = reply.headers.get(subjects::ERROR_HEADER) {
        let msg = err.split_once(": ").map_or(err, |(_, m)| m);
        return Err(ToolError::new(format!("the {owner} refused: {msg}")));
    }
    decode(&reply).map_err(|e| ToolError::new(format!("the {owner} answered badly: {e}")))
}

/// The first `n` characters of `s` (with `…` when cut).
pub(crate) fn snippet(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n).collect();
    out.push('…');
    out
}

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    match t
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
    {
        Some(d) => json!(d.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        None => Value::Null,
    }
}

/// A content item as the model sees it.
pub(crate) fn item_json(i: &v1::ContentItem) -> Value {
    json!({
        "id": i.item_id,
        "source": i.source,
        "kind": i.kind,
        "title": snippet(&i.title, 200),
        "url": i.url,
        "tags": i.tags.iter().take(16).collect::<Vec<_>>(),
        "palette": i.palette.iter().take(8).map(|c| c.hex.clone()).collect::<Vec<_>>(),
        "fonts": i.fonts.iter().take(8).collect::<Vec<_>>(),
        "text": snippet(&i.text, SNIPPET_CHARS),
        "ingested_at": ts(&i.ingested_at),
    })
}

/// Searches the library: `(query, kind, tags, limit)` → items as JSON.
pub(crate) async fn search_library(
    bus: &dyn Bus,
    query: &str,
    kind: Option<&str>,
    tags: Vec<String>,
    limit: u32,
) -> Result<Vec<Value>, ToolError> {
    let req = v1::SearchContentRequest {
        query: query.to_string(),
        kind: kind.unwrap_or_default().to_string(),
        tags,
        page_size: limit,
        ..Default::default()
    };
    let r: v1::SearchContentResponse = ask(
        bus,
        "content library (ingest service)",
        subjects::LIBRARY_SEARCH,
        &req,
        BUS_TIMEOUT,
    )
    .await?;
    Ok(r.items.iter().take(limit as usize).map(item_json).collect())
}

/// `library_search` {query, kind?, tags?, limit?}.
#[derive(Debug, Clone)]
pub struct LibrarySearchTool {
    bus: BusHandle,
}

impl LibrarySearchTool {
    /// Asking over `bus`.
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        LibrarySearchTool {
            bus: BusHandle(bus),
        }
    }
}

#[async_trait]
impl Tool for LibrarySearchTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "library_search".into(),
            description: "Search the studio's content library (ingested inspiration, posts, \
                          pages, images, campaigns): items with tags, palettes, fonts, links."
                .into(),
            input_schema: schema(
                &[
                    (
                        "query",
                        "string",
                        "Words to search for (empty: the newest items).",
                    ),
                    (
                        "kind",
                        "string",
                        "Only this kind: image, page, post, component, campaign, feedback, ...",
                    ),
                    ("tags", "array", "Only items with all these tags."),
                    ("limit", "integer", "Most items (1-20, default 10)."),
                ],
                &["query"],
            ),
        }
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        let m = args::object(&args)?;
        let query = args::opt_text(m, "query", 500)?.unwrap_or("");
        let kind = args::opt_text(m, "kind", 40)?;
        let tags = args::opt_texts(m, "tags", 10, 100)?;
        let limit = args::opt_count(m, "limit", 1, 20)?.unwrap_or(10) as u32;
        let items = search_library(self.bus.0.as_ref(), query, kind, tags, limit).await?;
        Ok(json!({ "count": items.len(), "items": items }).to_string())
    }
}

/// `metrics_get` {names?, window_hours?}.
#[derive(Debug, Clone)]
pub struct MetricsGetTool {
    bus: BusHandle,
}

impl MetricsGetTool {
    /// Asking over `bus`.
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        MetricsGetTool {
            bus: BusHandle(bus),
        }
    }
}

fn metric_json(m: &v1::Metric) -> Value {
    let values: Vec<f64> = m.series.iter().map(|p| p.value).collect();
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let trend = match (values.first(), values.last()) {
        (Some(a), Some(b)) if values.len() > 1 => json!(b - a),
        _ => Value::Null,
    };
    let skip = m.series.len().saturating_sub(MAX_POINTS);
    json!({
        "name": m.name,
        "group": m.group,
        "target": m.target,
        "current": m.current,
        "on_target": m.on_target,
        "tracker": m.tracker,
        "points": values.len(),
        "min": if values.is_empty() { Value::Null } else { json!(min) },
        "max": if values.is_empty() { Value::Null } else { json!(max) },
        "change": trend,
        "series": m.series.iter().skip(skip).map(|p| json!([ts(&p.at), p.value])).collect::<Vec<_>>(),
    })
}

#[async_trait]
impl Tool for MetricsGetTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "metrics_get".into(),
            description: "The studio's progress metrics: current value, target, whether on \
                          target, and the recent series (time, value)."
                .into(),
            input_schema: schema(
                &[
                    ("names", "array", "Metric names (default: every metric)."),
                    (
                        "window_hours",
                        "integer",
                        "How far back the series go (1-2160, default 168).",
                    ),
                ],
                &[],
            ),
        }
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        let empty = serde_json::Map::new();
        let m = match &args {
            Value::Null => &empty,
            a => args::object(a)?,
        };
        let req = v1::GetMetricsRequest {
            names: args::opt_texts(m, "names", 50, 100)?,
            window_hours: args::opt_count(m, "window_hours", 1, 2160)?.unwrap_or(0) as u32,
        };
        let r: v1::GetMetricsResponse = ask(
            self.bus.0.as_ref(),
            "tracker",
            subjects::TRACKER_GET_METRICS,
            &req,
            BUS_TIMEOUT,
        )
        .await?;
        let metrics: Vec<Value> = r.metrics.iter().take(50).map(metric_json).collect();
        Ok(json!({ "metrics": metrics }).to_string())
    }
}

/// `runs_recent` {workflow?, limit?}.
#[derive(Debug, Clone)]
pub struct RunsRecentTool {
    bus: BusHandle,
}

impl RunsRecentTool {
    /// Asking over `bus`.
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        RunsRecentTool {
            bus: BusHandle(bus),
        }
    }
}

fn run_json(r: &v1::Run) -> Value {
    let state = v1::RunState::try_from(r.state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("RUN_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let steps: Vec<Value> = r
        .steps
        .iter()
        .take(20)
        .map(|s| {
            let st = v1::StepState::try_from(s.state)
                .map(|x| {
                    x.as_str_name()
                        .trim_start_matches("STEP_STATE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let mut o = json!({ "step": s.step_id, "role": s.role, "state": st });
            if let Some(v) = &s.verdict {
                o["score"] = json!(v.score);
                o["pass"] = json!(v.pass);
                o["notes"] = json!(snippet(&v.notes, SNIPPET_CHARS));
            }
            if !s.error.is_empty() {
                o["error"] = json!(snippet(&s.error, 200));
            }
            o
        })
        .collect();
    json!({
        "run_id": r.run_id,
        "workflow": r.workflow,
        "trigger": r.trigger,
        "outcome": state,
        "created_at": ts(&r.created_at),
        "error": snippet(&r.error, 200),
        "steps": steps,
    })
}

#[async_trait]
impl Tool for RunsRecentTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "runs_recent".into(),
            description: "Recent runs of the studio's workflows, newest first: outcome, and \
                          per step its state, review score, pass and reviewer notes."
                .into(),
            input_schema: schema(
                &[
                    ("workflow", "string", "Only runs of this workflow."),
                    ("limit", "integer", "Most runs (1-20, default 5)."),
                ],
                &[],
            ),
        }
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        let empty = serde_json::Map::new();
        let m = match &args {
            Value::Null => &empty,
            a => args::object(a)?,
        };
        let limit = args::opt_count(m, "limit", 1, 20)?.unwrap_or(5) as u32;
        let req = v1::ListRunsRequest {
            workflow: args::opt_text(m, "workflow", 200)?
                .unwrap_or_default()
                .to_string(),
            page_size: limit,
            ..Default::default()
        };
        let r: v1::ListRunsResponse = ask(
            self.bus.0.as_ref(),
            "orchestrator",
            subjects::ORCHESTRATOR_LIST_RUNS,
            &req,
            BUS_TIMEOUT,
        )
        .await?;
        let runs: Vec<Value> = r.runs.iter().take(limit as usize).map(run_json).collect();
        Ok(json!({ "count": runs.len(), "runs": runs }).to_string())
    }
}

/// `brand_check` {text}: the text scored against the studio's brand rules.
#[derive(Debug, Clone)]
pub struct BrandCheckTool {
    rules: Arc<BrandRules>,
}

impl BrandCheckTool {
    /// Scoring with `rules`.
    pub fn new(rules: BrandRules) -> Self {
        BrandCheckTool {
            rules: Arc::new(rules),
        }
    }
}

#[async_trait]
impl Tool for BrandCheckTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "brand_check".into(),
            description: "Score a text against the studio's brand rules (0-1): pass, score, \
                          the issues found and how to fix them."
                .into(),
            input_schema: schema(&[("text", "string", "The text to score.")], &["text"]),
        }
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        let m = args::object(&args)?;
        let text = args::text(m, "text", MAX_BRAND_TEXT)?;
        let r = self.rules.score(text);
        let (notes, _) = cut(&r.notes, 2000);
        Ok(json!({
            "score": r.score,
            "pass": r.pass,
            "pass_score": self.rules.pass_score,
            "issues": r.reasons,
            "risky": r.risky,
            "labels": r.labels,
            "notes": notes,
        })
        .to_string())
    }
}
