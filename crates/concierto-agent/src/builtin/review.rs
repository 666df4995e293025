//! Reviews. `brand-guardian` scores against the brand rules; any other role
//! asked to review (a task with a `review` context and no notes) checks the
//! draft's completeness: there is text, enough of it, some structure, no
//! placeholders, and — for `analytics-reporter` — figures to back it.

use serde_json::json;

use concierto_proto::v1::{Task, Verdict};

use super::brand::{BrandRules, MINOR, OFF_BRAND, RISK};
use super::text::{figures, round2, words};
use super::{GENERATED_BY, Work};

/// The text under review: the review's draft, else the inputs other than the
/// trigger payload, else every input.
pub(super) fn subject_text(task: &Task) -> String {
    if let Some(r) = &task.review
        && !r.draft.trim().is_empty()
    {
        return r.draft.clone();
    }
    let texts: Vec<&str> = task
        .inputs
        .iter()
        .filter(|i| !i.content.trim().is_empty())
        .map(|i| i.content.as_str())
        .collect();
    let non_trigger: Vec<&str> = task
        .inputs
        .iter()
        .filter(|i| i.name != "trigger" && !i.content.trim().is_empty())
        .map(|i| i.content.as_str())
        .collect();
    if non_trigger.is_empty() {
        texts.join("\n\n")
    } else {
        non_trigger.join("\n\n")
    }
}

pub(super) fn brand(task: &Task, rules: &BrandRules) -> Work {
    let report = rules.score(&subject_text(task));
    let value = json!({
        "pass": report.pass,
        "score": report.score,
        "notes": report.notes,
        "reasons": report.reasons,
        "labels": report.labels,
        "checked": report.checked,
        "generated_by": GENERATED_BY,
    });
    Work {
        output: super::to_json(&value),
        content_type: "application/json",
        labels: report.labels.clone(),
        verdict: Some(Verdict {
            pass: report.pass,
            score: report.score,
            notes: report.notes,
            reasons: report.reasons,
        }),
    }
}

const PLACEHOLDERS: &[&str] = &["todo", "tbd", "lorem", "fixme", "xxx"];

pub(super) fn completeness(role: &str, task: &Task, pass_score: f64) -> Work {
    let text = subject_text(task);
    let ws = words(&text);
    let mut deductions: Vec<(f64, String)> = Vec::new();
    if ws.is_empty() {
        deductions.push((1.0, "empty: there is no draft to review".into()));
    } else {
        if ws.len() < 20 {
            deductions.push((
                OFF_BRAND,
                format!("substance: {} words is too short to act on", ws.len()),
            ));
        }
        let structured = text.lines().any(|l| {
            let t = l.trim_start();
            t.starts_with('#') || t.starts_with("- ") || t.starts_with("* ") || t.starts_with('|')
        }) || text.trim_start().starts_with('{');
        if !structured {
            deductions.push((MINOR, "structure: no headings, lists or tables".into()));
        }
        let found: Vec<&str> = PLACEHOLDERS
            .iter()
            .copied()
            .filter(|p| ws.iter().any(|w| w == p))
            .collect();
        if !found.is_empty() {
            deductions.push((
                OFF_BRAND,
                format!("unfinished: placeholder(s) {}", found.join(", ")),
            ));
        }
        if role == "analytics-reporter" && figures(&text).is_empty() {
            deductions.push((RISK, "data: no figure backs the conclusion".into()));
        }
    }
    let total: f64 = deductions.iter().map(|d| d.0).sum();
    let score = round2((1.0 - total).clamp(0.0, 1.0));
    let pass = score >= pass_score;
    let notes = if deductions.is_empty() {
        "Complete: the draft has substance and structure, and nothing is left unfinished."
            .to_string()
    } else {
        format!(
            "Score {score:.2}{}: {}.",
            if pass { ", passes" } else { ", does not pass" },
            deductions
                .iter()
                .map(|d| d.1.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let reasons: Vec<String> = deductions.into_iter().map(|d| d.1).collect();
    let value = json!({
        "pass": pass,
        "score": score,
        "notes": notes,
        "reasons": reasons,
        "generated_by": GENERATED_BY,
    });
    Work {
        output: super::to_json(&value),
        content_type: "application/json",
        labels: Vec::new(),
        verdict: Some(Verdict {
            pass,
            score,
            notes,
            reasons,
        }),
    }
}
