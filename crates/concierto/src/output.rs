//! What the client commands print: aligned plain-text tables for people, and
//! the admin API's messages as JSON (`--json`) for programs.
//!
//! prost types do not implement serde, so each message the CLI shows has a
//! hand-written `*_json` mapping: proto field names, timestamps as RFC 3339
//! with the offset of the display [`Zone`], enums by their short names
//! (`SUCCEEDED`, `OPEN`), every field present.
//!
//! Every time a person reads is shown in one [`Zone`]: the studio's
//! (`studio.timezone` of the studio file), else the local zone, or UTC with
//! `--utc`, labelled with the zone's abbreviation or offset
//! (`2026-03-29 09:00:00 CEST`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use concierto_proto::v1;
use prost_types::Timestamp;
use serde_json::{Value, json};

/// A table: a header row and rows of cells, printed with columns aligned.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print empty, extra cells are dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text: two spaces between columns, no trailing spaces.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(width(&cell(row, i)));
            }
        }
        let line = |row: &[String]| {
            let mut out = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = cell(row, i);
                out.push_str(&c);
                if i + 1 < n {
                    out.extend(std::iter::repeat_n(' ', w - width(&c) + 2));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.headers);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` on one line, cut to `max` characters with `…` when longer.
pub fn trunc(s: &str, max: usize) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if width(&one_line) <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `-` for an empty cell.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// The zone times are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A named zone (the studio's `studio.timezone`, or `TZ`): labelled with
    /// its abbreviation (`CEST`).
    Named(Tz),
    /// The machine's zone when it has no name: labelled with its offset
    /// (`UTC+02:00`).
    Local,
    /// UTC (`--utc`): labelled `UTC`.
    Utc,
}

impl Zone {
    /// The zone for a client command: UTC with `utc`, else the studio's from
    /// the studio file `file`, else the local zone (named when `TZ` names one).
    pub fn pick(utc: bool, file: &std::path::Path) -> Zone {
        if utc {
            return Zone::Utc;
        }
        if let Ok(studio) = concierto_core::config::load(file) {
            return Zone::Named(studio.studio.timezone);
        }
        Zone::local()
    }

    /// The local zone: `TZ` when it names a zone, else the machine's offset.
    pub fn local() -> Zone {
        match std::env::var("TZ")
            .ok()
            .and_then(|tz| tz.trim_start_matches(':').parse::<Tz>().ok())
        {
            Some(tz) => Zone::Named(tz),
            None => Zone::Local,
        }
    }

    /// `t` for a table cell: `2026-03-29 09:00:00 CEST`.
    pub fn cell(self, t: DateTime<Utc>) -> String {
        const F: &str = "%Y-%m-%d %H:%M:%S";
        match self {
            Zone::Named(tz) => t.with_timezone(&tz).format(&format!("{F} %Z")).to_string(),
            Zone::Local => t
                .with_timezone(&chrono::Local)
                .format(&format!("{F} UTC%:z"))
                .to_string(),
            Zone::Utc => t.format(&format!("{F} UTC")).to_string(),
        }
    }

    /// `t` as RFC 3339 with this zone's offset (`2026-03-29T09:00:00+02:00`;
    /// milliseconds when there are any; `Z` in UTC).
    pub fn rfc3339(self, t: DateTime<Utc>) -> String {
        use chrono::SecondsFormat::AutoSi;
        match self {
            Zone::Named(tz) => t.with_timezone(&tz).to_rfc3339_opts(AutoSi, true),
            Zone::Local => t
                .with_timezone(&chrono::Local)
                .to_rfc3339_opts(AutoSi, true),
            Zone::Utc => t.to_rfc3339_opts(AutoSi, true),
        }
    }
}

fn instant(ts: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    let ts = ts?;
    if ts.seconds == 0 && ts.nanos == 0 {
        return None;
    }
    // Whole milliseconds: what the services store.
    let nanos = u32::try_from(ts.nanos).unwrap_or(0) / 1_000_000 * 1_000_000;
    DateTime::from_timestamp(ts.seconds, nanos)
}

/// A timestamp as RFC 3339 in `zone` (`2025-06-02T11:00:00+02:00`); `None` for
/// an absent or zero timestamp.
pub fn rfc3339(ts: Option<&Timestamp>, zone: Zone) -> Option<String> {
    instant(ts).map(|t| zone.rfc3339(t))
}

/// A timestamp for a table cell in `zone`, labelled
/// (`2025-06-02 11:00:00 CEST`); `-` when absent.
pub fn when(ts: Option<&Timestamp>, zone: Zone) -> String {
    instant(ts).map_or_else(|| "-".to_string(), |t| zone.cell(t))
}

fn ts_json(ts: Option<&Timestamp>, zone: Zone) -> Value {
    rfc3339(ts, zone).map(Value::String).unwrap_or(Value::Null)
}

/// An enum value's short name: `RUN_STATE_SUCCEEDED` → `SUCCEEDED`.
fn short(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_string()
}

macro_rules! enum_name {
    ($(#[$doc:meta])* $fn:ident, $ty:ty, $prefix:literal) => {
        $(#[$doc])*
        pub fn $fn(value: i32) -> String {
            match <$ty>::try_from(value) {
                Ok(v) => short(v.as_str_name(), $prefix),
                Err(_) => value.to_string(),
            }
        }
    };
}

enum_name!(
    /// `SUCCEEDED`, `WAITING_GATE`, ...
    run_state,
    v1::RunState,
    "RUN_STATE_"
);
enum_name!(
    /// `DISPATCHED`, `IN_REVIEW`, ...
    step_state,
    v1::StepState,
    "STEP_STATE_"
);
enum_name!(
    /// `NORMAL`, `URGENT`, `FEEDBACK`.
    priority,
    v1::Priority,
    "PRIORITY_"
);
enum_name!(
    /// `OPEN`, `APPROVED`, `REJECTED`, `CHANGES_REQUESTED`.
    gate_state,
    v1::GateState,
    "GATE_STATE_"
);
enum_name!(
    /// `APPROVE`, `REJECT`, `REQUEST_CHANGES`.
    gate_decision,
    v1::GateDecisionKind,
    "GATE_DECISION_KIND_"
);
enum_name!(
    /// `SLACK`, `EMAIL`, `WEB_FORM`, `API`.
    feedback_channel,
    v1::FeedbackChannel,
    "FEEDBACK_CHANNEL_"
);
enum_name!(
    /// `BRAND`, `TECHNICAL`, `GROWTH`, `OTHER`.
    feedback_category,
    v1::FeedbackCategory,
    "FEEDBACK_CATEGORY_"
);

fn map_json(m: &std::collections::HashMap<String, String>) -> Value {
    let mut keys: Vec<_> = m.keys().collect();
    keys.sort();
    Value::Object(
        keys.into_iter()
            .map(|k| (k.clone(), Value::String(m[k].clone())))
            .collect(),
    )
}

/// A verdict.
pub fn verdict_json(v: &v1::Verdict) -> Value {
    json!({
        "pass": v.pass,
        "score": v.score,
        "notes": v.notes,
        "reasons": v.reasons,
    })
}

/// A task's usage.
pub fn usage_json(u: &v1::Usage) -> Value {
    json!({
        "executor": u.executor,
        "model": u.model,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "latency_ms": u.latency_ms,
        "cost_usd": u.cost_usd,
    })
}

/// One step of a run, its output in full.
pub fn step_json(s: &v1::RunStep, z: Zone) -> Value {
    json!({
        "step_id": s.step_id,
        "role": s.role,
        "state": step_state(s.state),
        "attempt": s.attempt,
        "output": s.output,
        "error": s.error,
        "labels": s.labels,
        "verdict": s.verdict.as_ref().map(verdict_json),
        "review_rounds": s.review_rounds,
        "usage": s.usage.as_ref().map(usage_json),
        "tool_calls": s.tool_calls.iter().map(|c| json!({
            "name": c.name,
            "arguments": c.arguments,
            "answer_bytes": c.answer_bytes,
            "latency_ms": c.latency_ms,
            "error": c.error,
        })).collect::<Vec<_>>(),
        "started_at": ts_json(s.started_at.as_ref(), z),
        "finished_at": ts_json(s.finished_at.as_ref(), z),
    })
}

/// A run with its steps.
pub fn run_json(r: &v1::Run, z: Zone) -> Value {
    json!({
        "run_id": r.run_id,
        "workflow": r.workflow,
        "trigger": r.trigger,
        "state": run_state(r.state),
        "priority": priority(r.priority),
        "steps": r.steps.iter().map(|s| step_json(s, z)).collect::<Vec<_>>(),
        "error": r.error,
        "cost_usd": r.cost_usd,
        "paused": r.paused,
        "created_at": ts_json(r.created_at.as_ref(), z),
        "updated_at": ts_json(r.updated_at.as_ref(), z),
        "requested_by": r.requested_by,
        "retry_of": r.retry_of,
        "params": map_json(&r.params),
    })
}

/// One event of a run.
pub fn run_event_json(e: &v1::RunEvent, z: Zone) -> Value {
    json!({
        "run_id": e.run_id,
        "workflow": e.workflow,
        "seq": e.seq,
        "at": ts_json(e.at.as_ref(), z),
        "run_state": run_state(e.run_state),
        "step_id": e.step_id,
        "step_state": step_state(e.step_state),
        "attempt": e.attempt,
        "role": e.role,
        "message": e.message,
        "priority": priority(e.priority),
    })
}

/// What opened a gate.
pub fn gate_request_json(r: &v1::GateRequest, z: Zone) -> Value {
    json!({
        "gate_id": r.gate_id,
        "gate": r.gate,
        "run_id": r.run_id,
        "step_id": r.step_id,
        "label": r.label,
        "reviewers": r.reviewers,
        "summary": r.summary,
        "content": r.content,
        "opened_at": ts_json(r.opened_at.as_ref(), z),
        "due_at": ts_json(r.due_at.as_ref(), z),
        "round": r.round,
    })
}

/// A decision on a gate.
pub fn gate_decision_json(d: &v1::GateDecision, z: Zone) -> Value {
    json!({
        "gate_id": d.gate_id,
        "decision": gate_decision(d.decision),
        "reviewer": d.reviewer,
        "notes": d.notes,
        "decided_at": ts_json(d.decided_at.as_ref(), z),
        "automatic": d.automatic,
    })
}

/// A gate with its decisions.
pub fn gate_json(g: &v1::Gate, z: Zone) -> Value {
    json!({
        "request": g.request.as_ref().map(|r| gate_request_json(r, z)),
        "state": gate_state(g.state),
        "decisions": g.decisions.iter().map(|d| gate_decision_json(d, z)).collect::<Vec<_>>(),
        "reminders": g.reminders,
        "escalated": g.escalated,
        "batch_of": g.batch_of,
        "batch_size": g.batch_size,
    })
}

/// A configured trigger.
pub fn trigger_json(t: &v1::Trigger, z: Zone) -> Value {
    json!({
        "name": t.name,
        "kind": t.kind,
        "spec": t.spec,
        "workflow": t.workflow,
        "agents": t.agents,
        "timezone": t.timezone,
        "next_fire": ts_json(t.next_fire.as_ref(), z),
        "last_fire": ts_json(t.last_fire.as_ref(), z),
        "fires": t.fires,
        "missed": t.missed,
        "dropped": t.dropped,
        "batched": t.batched,
        "paused": t.paused,
        "paused_by": t.paused_by,
        "paused_at": ts_json(t.paused_at.as_ref(), z),
    })
}

/// A piece of feedback as a person sent it.
pub fn feedback_json(f: &v1::Feedback, z: Zone) -> Value {
    json!({
        "feedback_id": f.feedback_id,
        "channel": feedback_channel(f.channel),
        "author": f.author,
        "subject": f.subject,
        "text": f.text,
        "attachments": f.attachments.iter().map(|a| json!({
            "name": a.name,
            "content_type": a.content_type,
            "size": a.size,
        })).collect::<Vec<_>>(),
        "run_id": f.run_id,
        "received_at": ts_json(f.received_at.as_ref(), z),
        "metadata": map_json(&f.metadata),
    })
}

/// Feedback with its category and specialists.
pub fn routed_feedback_json(r: &v1::RoutedFeedback, z: Zone) -> Value {
    json!({
        "feedback": r.feedback.as_ref().map(|f| feedback_json(f, z)),
        "category": feedback_category(r.category),
        "roles": r.roles,
        "confidence": r.confidence,
        "reason": r.reason,
        "routed_at": ts_json(r.routed_at.as_ref(), z),
    })
}

/// A feedback entry of `ListFeedback`.
pub fn feedback_entry_json(e: &v1::FeedbackEntry, z: Zone) -> Value {
    json!({
        "feedback": e.feedback.as_ref().map(|f| feedback_json(f, z)),
        "routed": e.routed.as_ref().map(|r| routed_feedback_json(r, z)),
        "first_response_at": ts_json(e.first_response_at.as_ref(), z),
    })
}

/// Prints `v` as one line of JSON.
pub fn print_json_line(v: &Value) {
    println!("{v}");
}

/// Prints `v` as indented JSON.
pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_the_last() {
        let mut t = Table::new(&["ID", "STATE", "NOTE"]);
        t.row(vec!["a".into(), "SUCCEEDED".into(), "".into()]);
        t.row(vec!["longer-id".into(), "FAILED".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "ID         STATE      NOTE\na          SUCCEEDED\nlonger-id  FAILED     x\n"
        );
    }

    #[test]
    fn trunc_keeps_one_line_and_marks_the_cut() {
        assert_eq!(trunc("short", 10), "short");
        assert_eq!(trunc("two\nlines", 20), "two lines");
        assert_eq!(trunc("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn enums_print_by_short_name_and_unknown_values_as_numbers() {
        assert_eq!(run_state(v1::RunState::WaitingGate as i32), "WAITING_GATE");
        assert_eq!(gate_state(4), "CHANGES_REQUESTED");
        assert_eq!(priority(99), "99");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_and_zero_is_absent() {
        let ts = Timestamp {
            seconds: 1_748_854_800,
            nanos: 5_000_000,
        };
        assert_eq!(
            rfc3339(Some(&ts), Zone::Utc).as_deref(),
            Some("2025-06-02T09:00:00.005Z")
        );
        assert_eq!(when(Some(&ts), Zone::Utc), "2025-06-02 09:00:00 UTC");
        assert_eq!(rfc3339(Some(&Timestamp::default()), Zone::Utc), None);
        assert_eq!(when(None, Zone::Utc), "-");
    }

    #[test]
    fn times_show_in_the_studio_zone_labelled_and_json_has_the_offset() {
        let madrid = Zone::Named("Europe/Madrid".parse().unwrap());
        // 2026-03-29 07:00 UTC: the first morning of summer time in Madrid.
        let summer = Timestamp {
            seconds: 1_774_767_600,
            nanos: 0,
        };
        assert_eq!(when(Some(&summer), madrid), "2026-03-29 09:00:00 CEST");
        assert_eq!(
            rfc3339(Some(&summer), madrid).as_deref(),
            Some("2026-03-29T09:00:00+02:00")
        );
        // A day earlier it was winter time.
        let winter = Timestamp {
            seconds: 1_774_767_600 - 86_400,
            nanos: 0,
        };
        assert_eq!(when(Some(&winter), madrid), "2026-03-28 08:00:00 CET");
        assert_eq!(
            rfc3339(Some(&winter), madrid).as_deref(),
            Some("2026-03-28T08:00:00+01:00")
        );
        let local = when(Some(&summer), Zone::Local);
        assert!(
            local.contains(" UTC+") || local.contains(" UTC-"),
            "{local}"
        );
    }

    #[test]
    fn the_zone_is_utc_when_asked_and_the_studio_zone_from_its_file() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/studio/concierto.yaml");
        assert_eq!(Zone::pick(true, &file), Zone::Utc);
        assert_eq!(
            Zone::pick(false, &file),
            Zone::Named("Europe/Madrid".parse().unwrap())
        );
        assert_eq!(
            Zone::pick(false, std::path::Path::new("/nonexistent/studio.yaml")),
            Zone::local()
        );
    }

    #[test]
    fn a_run_maps_to_json_with_short_enum_names() {
        let run = v1::Run {
            run_id: "r1".into(),
            state: v1::RunState::Succeeded as i32,
            steps: vec![v1::RunStep {
                step_id: "s".into(),
                state: v1::StepState::Succeeded as i32,
                verdict: Some(v1::Verdict {
                    pass: true,
                    score: 0.9,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = run_json(&run, Zone::Utc);
        assert_eq!(v["state"], "SUCCEEDED");
        assert_eq!(v["steps"][0]["state"], "SUCCEEDED");
        assert_eq!(v["steps"][0]["verdict"]["score"], 0.9);
        assert_eq!(v["created_at"], Value::Null);
    }
}
