//! Every role without a builtin speciality: a structured brief — title, key
//! points taken from the inputs, key terms, angles when the instruction asks for
//! them, next actions — built from the instruction and the inputs.

use std::fmt::Write as _;

use concierto_core::roles::RoleDef;
use concierto_proto::v1::Task;

use super::brand::BrandRules;
use super::text::{
    best_sentences, capitalize, first_words, key_phrases, role_title, sentences, token_estimate,
};
use super::{Work, input_texts};

const ACTIONS: &[&str] = &[
    "Confirm what the inputs say about {} with the step that produced them.",
    "Turn {} into one concrete proposal for the next step.",
    "Measure how {} performs and report it back to the studio.",
    "Collect one example of {} from the content sources.",
    "Ask the owning role for a decision on {}.",
];

const ANGLE_TEMPLATES: &[&str] = &[
    "a clear, practical take for our audience",
    "the story behind it, told through the studio's own work",
    "what it changes for the people we make things for",
    "a simple how-to our audience can use this week",
    "the craft details most people miss",
];

pub(super) fn brief(role: &RoleDef, task: &Task, rules: &BrandRules) -> Work {
    let texts = input_texts(task);
    let refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
    let keep = |p: &str| !rules.is_off_brand(p);
    let mut phrases = key_phrases(&refs, 6, keep);
    if phrases.is_empty() {
        phrases = key_phrases(&[task.instruction.as_str()], 4, keep);
    }
    let points = best_sentences(&refs, &phrases, 5, 4, 30, super::text::is_prose);
    let title = sentences(&task.instruction)
        .first()
        .map(|s| first_words(s.trim_end_matches(['.', '!', '?']), 8))
        .unwrap_or_else(|| format!("work from {} input(s)", texts.len()));

    let mut out = String::new();
    let _ = writeln!(out, "## {} brief: {}", role_title(&role.name), title);
    let _ = writeln!(out, "role: {}", role.name);
    if !task.instruction.trim().is_empty() {
        let _ = writeln!(out, "task: {}", task.instruction.trim());
    }
    let _ = writeln!(out, "\n### Key points");
    if points.is_empty() {
        if texts.is_empty() {
            let _ = writeln!(
                out,
                "- No inputs were given; this brief rests on the instruction alone."
            );
        } else {
            let _ = writeln!(
                out,
                "- The inputs hold no full sentences to quote; see the key terms."
            );
        }
    }
    for p in &points {
        let _ = writeln!(out, "- {p}");
    }
    let _ = writeln!(out, "\n### Key terms");
    if phrases.is_empty() {
        let _ = writeln!(out, "none found");
    } else {
        let _ = writeln!(out, "{}", phrases.join(", "));
    }
    if task.instruction.to_lowercase().contains("angle") && !phrases.is_empty() {
        let _ = writeln!(out, "\n### Angles");
        for (i, p) in phrases.iter().take(3).enumerate() {
            let _ = writeln!(
                out,
                "{}. {}: {}",
                i + 1,
                capitalize(p),
                ANGLE_TEMPLATES[i % ANGLE_TEMPLATES.len()]
            );
        }
    }
    if let Some(r) = task.review.as_ref().filter(|r| !r.notes.trim().is_empty()) {
        let _ = writeln!(out, "\n### Revision");
        let _ = writeln!(out, "{}", super::content::revision_line(r, rules));
    }
    let _ = writeln!(out, "\n### Next actions");
    if phrases.is_empty() {
        let _ = writeln!(
            out,
            "1. Gather inputs for this task; none carried enough text to work from."
        );
    }
    for (i, p) in phrases.iter().take(3).enumerate() {
        let _ = writeln!(
            out,
            "{}. {}",
            i + 1,
            ACTIONS[i % ACTIONS.len()].replace("{}", p)
        );
    }
    let _ = writeln!(out, "\n### Sources");
    if texts.is_empty() {
        let _ = writeln!(out, "- the instruction");
    }
    for (name, t) in &texts {
        let _ = writeln!(out, "- {name} ({} words)", token_estimate(t));
    }
    Work::markdown(out)
}
