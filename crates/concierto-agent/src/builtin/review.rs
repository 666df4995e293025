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

/// The pass mark a review task asks for (its `pass_mark`), else `default`.
fn pass_mark(task: &Task, default: f64) -> f64 {
    task.review
        .as_ref()
        .map(|r| r.pass_mark)
        .filter(|m| *m > 0.0 && *m <= 1.0)
        .unwrap_or(default)
}

/// The brand rules with the task's pass mark.
fn rules_for(task: &Task, rules: &BrandRules) -> BrandRules {
    let mut r = rules.clone();
    r.pass_score = pass_mark(task, rules.pass_score);
    r
}

/// One draft judged.
struct Judged {
    pass: bool,
    score: f64,
    notes: String,
    reasons: Vec<String>,
    labels: Vec<String>,
    checked: Option<serde_json::Value>,
}

fn judge(kind: &str, text: &str, rules: &BrandRules) -> Judged {
    if kind == "brand-guardian" {
        let report = rules.score(text);
        Judged {
            pass: report.pass,
            score: report.score,
            notes: report.notes,
            reasons: report.reasons,
            labels: report.labels,
            checked: serde_json::to_value(&report.checked).ok(),
        }
    } else {
        completeness_of(kind, text, rules.pass_score)
    }
}

fn work_of(j: Judged) -> Work {
    let mut value = json!({
        "pass": j.pass,
        "score": j.score,
        "notes": j.notes,
        "reasons": j.reasons,
        "labels": j.labels,
    });
    if let Some(c) = j.checked {
        value["checked"] = c;
    }
    value["generated_by"] = json!(GENERATED_BY);
    Work {
        output: super::to_json(&value),
        content_type: "application/json",
        labels: j.labels,
        verdict: Some(Verdict {
            pass: j.pass,
            score: j.score,
            notes: j.notes,
            reasons: j.reasons,
        }),
    }
}

/// `brand-guardian`: the draft scored against the brand rules.
pub(super) fn brand(task: &Task, rules: &BrandRules) -> Work {
    work_of(judge(
        "brand-guardian",
        &subject_text(task),
        &rules_for(task, rules),
    ))
}

/// Any reviewing role but brand-guardian: the draft's completeness.
pub(super) fn completeness(role: &str, task: &Task, pass_score: f64) -> Work {
    work_of(completeness_of(
        role,
        &subject_text(task),
        pass_mark(task, pass_score),
    ))
}

/// A batch review: every input is one draft, named `<run>/<step>`; each is
/// judged as [`brand`] or [`completeness`] would, and the answer lists one
/// verdict per draft. The task's own verdict passes when every draft does.
pub(super) fn batch(kind: &str, task: &Task, rules: &BrandRules) -> Work {
    let rules = rules_for(task, rules);
    let mut items = Vec::new();
    let mut all_pass = true;
    let mut lowest: f64 = 1.0;
    let mut failing = Vec::new();
    for input in &task.inputs {
        let j = judge(kind, &input.content, &rules);
        all_pass &= j.pass;
        lowest = lowest.min(j.score);
        if !j.pass {
            failing.push(input.name.clone());
        }
        items.push(json!({
            "subject": input.name,
            "pass": j.pass,
            "score": j.score,
            "notes": j.notes,
            "reasons": j.reasons,
            "labels": j.labels,
        }));
    }
    if task.inputs.is_empty() {
        all_pass = false;
        lowest = 0.0;
    }
    let notes = if task.inputs.is_empty() {
        "empty batch: there is no draft to review".to_string()
    } else {
        format!(
            "{} of {} draft(s) pass{}",
            task.inputs.len() - failing.len(),
            task.inputs.len(),
            if failing.is_empty() {
                String::new()
            } else {
                format!("; to revise: {}", failing.join(", "))
            }
        )
    };
    let value = json!({
        "items": items,
        "pass": all_pass,
        "score": round2(lowest),
        "notes": notes,
        "generated_by": GENERATED_BY,
    });
    Work {
        output: super::to_json(&value),
        content_type: "application/json",
        labels: Vec::new(),
        verdict: Some(Verdict {
            pass: all_pass,
            score: round2(lowest),
            notes,
            reasons: failing,
        }),
    }
}

const PLACEHOLDERS: &[&str] = &["todo", "tbd", "lorem", "fixme", "xxx"];

fn completeness_of(role: &str, text: &str, pass_score: f64) -> Judged {
    let ws = words(text);
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
        if role == "analytics-reporter" && figures(text).is_empty() {
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
    Judged {
        pass,
        score,
        notes,
        reasons,
        labels: Vec::new(),
        checked: None,
    }
}
