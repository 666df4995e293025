//! `content-creator`: drafts pieces from a template, in the shape
//! `agents/content-creator.md` asks for, built from the instruction and the
//! inputs' key phrases. Hype words and risky claims never make it in; on a
//! revision the reviewer's notes are listed as addressed.

use std::fmt::Write as _;

use concierto_proto::v1::{ReviewContext, Task};

use super::brand::BrandRules;
use super::text::{best_sentences, capitalize, clip_chars, first_words, key_phrases, title_case};
use super::{Work, input_texts};

/// Most pieces one task gets.
const MAX_PIECES: usize = 5;

pub(super) fn draft(task: &Task, rules: &BrandRules) -> Work {
    let texts = input_texts(task);
    let mut refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
    let revision = task.review.as_ref().filter(|r| !r.notes.trim().is_empty());
    if let Some(r) = revision
        && refs.is_empty()
    {
        refs.push(r.draft.as_str());
    }
    let keep = |p: &str| !rules.is_off_brand(p);
    let mut phrases = key_phrases(&refs, 8, keep);
    if phrases.is_empty() {
        phrases = key_phrases(&[task.instruction.as_str()], 4, keep);
    }
    if phrases.is_empty() {
        phrases.push("the studio's work".to_string());
    }
    let angles: Vec<String> = refs
        .iter()
        .flat_map(|t| angles(t))
        .filter(|a| !rules.is_off_brand(a))
        .take(MAX_PIECES)
        .collect();
    let lower = task.instruction.to_lowercase();
    let wants_several = ["pieces", "per angle", "each angle", "control and variant"]
        .iter()
        .any(|w| lower.contains(w));
    let leads: Vec<String> = if !angles.is_empty() && wants_several {
        angles
    } else if wants_several {
        phrases.iter().take(3).cloned().collect()
    } else {
        phrases.iter().take(1).cloned().collect()
    };
    let channel = channel(&format!("{lower} {}", refs.join(" ").to_lowercase()));
    let audience = task
        .params
        .get("audience")
        .cloned()
        .unwrap_or_else(|| "the studio's audience".to_string());
    let sources: Vec<&str> = texts.iter().map(|(n, _)| n.as_str()).collect();

    let mut out = String::new();
    for (i, lead) in leads.iter().enumerate() {
        let other = phrases
            .iter()
            .find(|p| !lead.to_lowercase().contains(p.as_str()))
            .cloned()
            .unwrap_or_else(|| "the work ahead".to_string());
        let lead_words: Vec<String> = super::text::words(lead)
            .into_iter()
            .filter(|w| super::text::is_content_word(w))
            .collect();
        let terms = if lead_words.is_empty() {
            phrases.clone()
        } else {
            lead_words
        };
        let support = best_sentences(&refs, &terms, 2, 4, 24, |s| {
            keep(s) && super::text::is_prose(s) && !s.contains(':')
        });
        if i > 0 {
            out.push('\n');
        }
        let title = title_case(&first_words(lead, 8).replace('…', ""));
        let _ = writeln!(out, "## Piece {}: {title}", i + 1);
        let _ = writeln!(out, "channel: {channel}");
        let _ = writeln!(out, "audience: {audience}");
        let _ = writeln!(out, "\n### Headline");
        let _ = writeln!(out, "A: {title}, made clear");
        let _ = writeln!(out, "B: What {lead} means for {other}");
        let _ = writeln!(out, "\n### Body");
        let post = clip_chars(
            &format!(
                "{}: how our studio approaches it, with care and a clear plan. More on {other} below.",
                capitalize(lead)
            ),
            280,
        );
        let _ = writeln!(out, "Post: {post}\n");
        let mut caption = vec![format!(
            "Today we look at {}.",
            join_and(
                &std::iter::once(lead.clone())
                    .chain(std::iter::once(other.clone()))
                    .collect::<Vec<_>>()
            )
        )];
        for s in &support {
            let s = s.trim_end_matches(['.', '!', '?', ':', ';', ',']);
            caption.push(format!("{s}."));
        }
        caption.push("We keep it simple: clear craft, made with care by the studio.".to_string());
        if !task.instruction.trim().is_empty() && !rules.is_off_brand(&task.instruction) {
            let brief = first_words(
                super::text::sentences(&task.instruction)
                    .first()
                    .map_or("", String::as_str)
                    .trim_end_matches('.'),
                18,
            );
            caption.push(format!(
                "This piece answers the brief: {}.",
                lowercase_first(&brief)
            ));
        }
        let caption = clip_words(&caption.join(" "), 150);
        let _ = writeln!(out, "{caption}");
        let _ = writeln!(out, "\n### Call to action");
        let _ = writeln!(out, "Tell us how {lead} shows up in your work.");
        let _ = writeln!(out, "\n### Notes for reviewers");
        let _ = writeln!(
            out,
            "- Drafted from the instruction and {} input(s){}; no model was called.",
            sources.len(),
            if sources.is_empty() {
                String::new()
            } else {
                format!(" ({})", sources.join(", "))
            }
        );
        let _ = writeln!(out, "- Key phrases: {}.", phrases.join(", "));
        if support.is_empty() {
            let _ = writeln!(out, "- No figures or claims are quoted.");
        } else {
            let _ = writeln!(
                out,
                "- Sentences quoted in the caption come from the inputs as written."
            );
        }
        if let Some(r) = revision {
            let _ = writeln!(out, "- {}", revision_line(r, rules));
        }
    }
    Work::markdown(out)
}

/// What a revision says about the reviewer's notes: quoted, unless quoting
/// them would bring back the words they ask to remove.
pub(super) fn revision_line(r: &ReviewContext, rules: &BrandRules) -> String {
    if rules.is_off_brand(&r.notes) {
        format!(
            "Revision (round {}): rewritten to address the reviewer's notes; the hype words and claims they name are left out.",
            r.round
        )
    } else {
        format!(
            "Revision (round {}): addressed the reviewer's notes: {}",
            r.round,
            first_words(r.notes.trim(), 40)
        )
    }
}

/// List items under a heading that names angles (`### Angles`), each as its
/// topic: the text before a `:` when there is one.
pub(super) fn angles(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            inside = t.to_lowercase().contains("angle");
            continue;
        }
        if !inside {
            continue;
        }
        let item = if let Some(rest) = t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")) {
            rest
        } else {
            let digits = t.chars().take_while(char::is_ascii_digit).count();
            match t.get(digits..).and_then(|r| r.strip_prefix(". ")) {
                Some(rest) if digits > 0 => rest,
                _ => continue,
            }
        };
        let topic = item
            .split(':')
            .next()
            .unwrap_or(item)
            .trim()
            .trim_matches('*');
        if !topic.is_empty() {
            out.push(sentence_case_to_lower(topic));
        }
    }
    out
}

/// `Sustainable packaging` → `sustainable packaging`; `AI tools` and
/// `Barcelona` stay as they are (a capital followed by a capital, or a single
/// capitalised word, may be a name).
fn sentence_case_to_lower(s: &str) -> String {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if a.is_uppercase() && b.is_lowercase() && s.contains(' ') => {
            lowercase_first(s)
        }
        _ => s.to_string(),
    }
}

fn channel(text: &str) -> &'static str {
    if text.contains("newsletter") {
        "newsletter"
    } else if text.contains("blog") || text.contains("article") {
        "blog"
    } else if text.contains("video") || text.contains("script") {
        "video script"
    } else {
        "social post"
    }
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// At most `n` words, ending on a full sentence where possible.
fn clip_words(s: &str, n: usize) -> String {
    let ws: Vec<&str> = s.split_whitespace().collect();
    if ws.len() <= n {
        return s.to_string();
    }
    let cut = ws[..n].join(" ");
    match cut.rfind(". ") {
        Some(i) => cut[..=i].to_string(),
        None => format!("{cut}…"),
    }
}
