//! `feedback-synthesizer`: puts a feedback text in one category — brand,
//! technical, growth or other — by keyword scoring, and names the roles that
//! category is routed to.

use serde_json::json;

use concierto_proto::v1::Task;

use super::text::{contains_phrase, first_words, round2, sentences, words};
use super::{GENERATED_BY, Work, input_texts};

/// The categories, in the order ties are broken (most urgent action first).
pub use concierto_core::feedback::{CATEGORIES, roles_for};

/// Keywords and their weights per category. Strong signals weigh 2.
const KEYWORDS: &[(&str, &[(&str, u32)])] = &[
    (
        "technical",
        &[
            ("broken", 2),
            ("bug", 2),
            ("bugs", 2),
            ("error", 2),
            ("errors", 2),
            ("crash", 2),
            ("crashes", 2),
            ("404", 2),
            ("500", 1),
            ("outage", 2),
            ("down", 1),
            ("fails", 2),
            ("failing", 2),
            ("failed", 1),
            ("link", 1),
            ("links", 1),
            ("page", 1),
            ("pages", 1),
            ("layout", 1),
            ("button", 1),
            ("load", 1),
            ("loads", 1),
            ("loading", 1),
            ("slow", 1),
            ("mobile", 1),
            ("phone", 1),
            ("browser", 1),
            ("api", 1),
            ("timeout", 2),
            ("wrong data", 2),
            ("cuts off", 2),
            ("doesn't work", 2),
            ("not working", 2),
            ("form", 1),
            ("login", 1),
        ],
    ),
    (
        "brand",
        &[
            ("brand", 2),
            ("off-brand", 3),
            ("on-brand", 2),
            ("logo", 2),
            ("logos", 2),
            ("colour", 1),
            ("colours", 1),
            ("color", 1),
            ("colors", 1),
            ("palette", 2),
            ("font", 1),
            ("fonts", 1),
            ("typography", 2),
            ("typeface", 2),
            ("tone", 2),
            ("voice", 2),
            ("messaging", 1),
            ("tagline", 2),
            ("visual", 1),
            ("visuals", 1),
            ("imagery", 1),
            ("style", 1),
            ("look", 1),
            ("feel", 1),
            ("wording", 1),
        ],
    ),
    (
        "growth",
        &[
            ("engagement", 2),
            ("reach", 2),
            ("conversion", 2),
            ("conversions", 2),
            ("audience", 1),
            ("followers", 2),
            ("clicks", 1),
            ("ctr", 2),
            ("traffic", 1),
            ("growth", 2),
            ("subscribers", 1),
            ("signups", 1),
            ("sign-ups", 1),
            ("timing", 1),
            ("channel", 1),
            ("channels", 1),
            ("campaign", 1),
            ("impressions", 1),
            ("retention", 1),
            ("funnel", 1),
            ("views", 1),
            ("shares", 1),
        ],
    ),
];

const URGENT: &[&str] = &[
    "urgent",
    "asap",
    "immediately",
    "broken",
    "down",
    "outage",
    "client",
    "public",
    "live",
    "customers",
];
const PRAISE: &[&str] = &[
    "love",
    "great",
    "thanks",
    "thank",
    "brilliant",
    "nice",
    "well done",
];

/// The category of `text` and each category's score.
pub fn categorise(text: &str) -> (&'static str, Vec<(&'static str, u32)>, Vec<String>) {
    let ws = words(text);
    let mut scores = Vec::new();
    let mut hits_of_best = Vec::new();
    let mut best: (&str, u32) = ("other", 0);
    for cat in CATEGORIES {
        let Some((_, kws)) = KEYWORDS.iter().find(|(c, _)| c == cat) else {
            continue;
        };
        let mut score = 0;
        let mut hits = Vec::new();
        for (kw, weight) in kws.iter() {
            let n = u32::try_from(contains_phrase(&ws, kw)).unwrap_or(u32::MAX);
            if n > 0 {
                score += weight * n;
                hits.push(kw.to_string());
            }
        }
        scores.push((*cat, score));
        if score > best.1 {
            best = (cat, score);
            hits_of_best = hits;
        }
    }
    (best.0, scores, hits_of_best)
}

pub(super) fn synthesize(
    task: &Task,
    routing: Option<&indexmap::IndexMap<String, Vec<String>>>,
) -> Work {
    let texts = input_texts(task);
    let text = if texts.is_empty() {
        task.instruction.clone()
    } else {
        texts
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (category, scores, hits) = categorise(&text);
    let total: u32 = scores.iter().map(|s| s.1).sum();
    let top = scores.iter().find(|s| s.0 == category).map_or(0, |s| s.1);
    let confidence = if total == 0 {
        0.3
    } else {
        round2(0.4 + 0.6 * f64::from(top) / f64::from(total))
    };
    let ss = sentences(&text);
    let key_sentence = ss
        .iter()
        .find(|s| {
            let w = words(s);
            hits.iter().any(|h| contains_phrase(&w, h) > 0)
        })
        .or_else(|| ss.first())
        .cloned()
        .unwrap_or_default();
    let others: Vec<&str> = scores
        .iter()
        .filter(|s| s.0 != category && s.1 > 0)
        .map(|s| s.0)
        .collect();
    let mut reason = if hits.is_empty() {
        "No brand, technical or growth keywords: routed for a person to answer.".to_string()
    } else {
        format!(
            "Mentions {}: \"{}\".",
            hits.iter()
                .take(4)
                .map(|h| format!("'{h}'"))
                .collect::<Vec<_>>()
                .join(", "),
            first_words(&key_sentence, 25)
        )
    };
    if !others.is_empty() {
        reason.push_str(&format!(" Also touches on {}.", others.join(", ")));
    }
    let ws = words(&text);
    let urgency = if URGENT.iter().any(|u| contains_phrase(&ws, u) > 0) {
        "high"
    } else if category == "other" && PRAISE.iter().any(|p| contains_phrase(&ws, p) > 0) {
        "low"
    } else {
        "normal"
    };
    let value = json!({
        "category": category,
        "roles": routing
            .and_then(|t| t.get(category).or_else(|| t.get("other")))
            .map(|r| r.iter().map(|s| s.as_str()).collect::<Vec<_>>())
            .unwrap_or_else(|| roles_for(category).to_vec()),
        "confidence": confidence,
        "reason": reason,
        "summary": first_words(ss.first().map_or("", String::as_str), 20),
        "urgency": urgency,
        "scores": scores.iter().map(|(c, s)| ((*c).to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
        "generated_by": GENERATED_BY,
    });
    Work {
        output: super::to_json(&value),
        content_type: "application/json",
        labels: Vec::new(),
        verdict: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierto_proto::v1::TaskInput;

    fn task(text: &str) -> Task {
        Task {
            inputs: vec![TaskInput {
                name: "trigger".into(),
                content: text.into(),
                content_type: "text/plain".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_studio_routing_table_names_the_roles() {
        let text = "The logo colours are off-brand and the tone of voice is wrong.";
        let seed: serde_json::Value =
            serde_json::from_str(&synthesize(&task(text), None).output).unwrap();
        assert_eq!(seed["category"], "brand");
        assert_eq!(
            seed["roles"],
            json!(["brand-guardian", "creative-director"])
        );
        let table: indexmap::IndexMap<String, Vec<String>> =
            [("brand".to_string(), vec!["ui-designer".to_string()])]
                .into_iter()
                .collect();
        let own: serde_json::Value =
            serde_json::from_str(&synthesize(&task(text), Some(&table)).output).unwrap();
        assert_eq!(own["roles"], json!(["ui-designer"]));
    }
}
