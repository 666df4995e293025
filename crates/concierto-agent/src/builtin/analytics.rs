//! `analytics-reporter`: finds the figures in the inputs and summarises them —
//! count, min, max, mean, with percentages kept apart — in the report shape of
//! `agents/analytics-reporter.md`.

use std::fmt::Write as _;

use concierto_proto::v1::Task;

use super::text::{Figure, figures, fmt_num, sentences};
use super::{Work, input_texts};

/// Rows of the details table at most.
const MAX_ROWS: usize = 12;

/// Count, min, max and mean of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// How many.
    pub count: usize,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// The summary of `values`, `None` when there are none.
pub fn summarise(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    Some(Summary {
        count: values.len(),
        min,
        max,
        mean,
    })
}

pub(super) fn report(task: &Task) -> Work {
    let texts = input_texts(task);
    let found: Vec<(&str, Figure)> = texts
        .iter()
        .flat_map(|(name, t)| figures(t).into_iter().map(move |f| (name.as_str(), f)))
        .collect();
    let plain: Vec<f64> = found
        .iter()
        .filter(|(_, f)| !f.percent)
        .map(|(_, f)| f.value)
        .collect();
    let pct: Vec<f64> = found
        .iter()
        .filter(|(_, f)| f.percent)
        .map(|(_, f)| f.value)
        .collect();
    let title = sentences(&task.instruction)
        .first()
        .map(|s| super::text::first_words(s.trim_end_matches('.'), 8))
        .unwrap_or_else(|| "Figures summary".to_string());
    let period = task
        .params
        .get("period")
        .cloned()
        .unwrap_or_else(|| "this run".to_string());

    let mut out = String::new();
    let _ = writeln!(out, "## {title} — {period}");
    let _ = writeln!(out, "\n### Headline");
    if found.is_empty() {
        let _ = writeln!(
            out,
            "- No figures found in {} input(s): nothing to measure yet.",
            texts.len()
        );
    }
    if let Some(s) = summarise(&plain) {
        let _ = writeln!(
            out,
            "- {} figure(s) in {} input(s): min {}, max {}, mean {}.",
            s.count,
            texts.len(),
            fmt_num(s.min),
            fmt_num(s.max),
            fmt_num(s.mean)
        );
    }
    if let Some(s) = summarise(&pct) {
        let _ = writeln!(
            out,
            "- {} percentage(s): min {}%, max {}%, mean {}%.",
            s.count,
            fmt_num(s.min),
            fmt_num(s.max),
            fmt_num(s.mean)
        );
    }
    let extreme = |pick_max: bool| {
        found
            .iter()
            .filter(|(_, f)| !f.percent)
            .fold(None::<&(&str, Figure)>, |best, cur| match best {
                Some(b)
                    if (pick_max && cur.1.value <= b.1.value)
                        || (!pick_max && cur.1.value >= b.1.value) =>
                {
                    Some(b)
                }
                _ => Some(cur),
            })
    };
    if plain.len() > 1
        && let (Some(hi), Some(lo)) = (extreme(true), extreme(false))
    {
        let _ = writeln!(
            out,
            "- Largest: {} ({}, from {}); smallest: {} ({}, from {}).",
            hi.1.text,
            label(&hi.1),
            hi.0,
            lo.1.text,
            label(&lo.1),
            lo.0
        );
    }
    if !found.is_empty() {
        let _ = writeln!(out, "\n### Details");
        let _ = writeln!(out, "| metric | value | source |");
        let _ = writeln!(out, "|---|---|---|");
        for (source, f) in found.iter().take(MAX_ROWS) {
            let _ = writeln!(out, "| {} | {} | {} |", label(f), f.text, source);
        }
        if found.len() > MAX_ROWS {
            let _ = writeln!(
                out,
                "\n{} more figure(s) not shown.",
                found.len() - MAX_ROWS
            );
        }
    }
    let _ = writeln!(out, "\n### What to do");
    if found.is_empty() {
        let _ = writeln!(
            out,
            "1. Send the figures to report (analytics exports or earlier steps' numbers) — owner: analytics-reporter"
        );
    } else {
        let _ = writeln!(
            out,
            "1. Check the largest and smallest figures against their sources — owner: analytics-reporter"
        );
        let _ = writeln!(
            out,
            "2. Compare these figures with the previous period and the targets — owner: analytics-reporter"
        );
    }
    let _ = writeln!(out, "\n### Sources");
    if texts.is_empty() {
        let _ = writeln!(out, "- none");
    }
    for (name, t) in &texts {
        let _ = writeln!(out, "- {name} ({} figure(s))", figures(t).len());
    }
    Work::markdown(out)
}

fn label(f: &Figure) -> &str {
    if f.label.is_empty() {
        "value"
    } else {
        &f.label
    }
}
