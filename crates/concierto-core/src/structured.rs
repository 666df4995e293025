//! Structured answers inside agent outputs: a reviewer's verdict (`pass`,
//! `score`, `notes`), a batch of verdicts, and output labels. Models wrap JSON
//! in prose or a ```` ```json ```` fence, so the object is looked for, not
//! assumed to be the whole text.

use serde_json::{Map, Value};

/// A verdict as found in an output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FoundVerdict {
    /// The reviewer's own pass (true when it gave only a score).
    pub pass: bool,
    /// In 0..1 (a score given in percent is divided by 100).
    pub score: f64,
    /// What to change.
    pub notes: String,
    /// Why.
    pub reasons: Vec<String>,
    /// Labels it puts on the output.
    pub labels: Vec<String>,
}

/// The first JSON object in `text`: the whole text, a fenced block, or the
/// span from the first `{` to the last `}`.
pub fn json_object(text: &str) -> Option<Map<String, Value>> {
    let t = text.trim();
    let candidates = [
        Some(t),
        fenced(t),
        t.find('{')
            .zip(t.rfind('}'))
            .filter(|(a, b)| a < b)
            .map(|(a, b)| &t[a..=b]),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|c| match serde_json::from_str::<Value>(c) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
}

fn fenced(t: &str) -> Option<&str> {
    let start = t.find("```")?;
    let after = &t[start + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let end = body.find("```")?;
    Some(body[..end].trim())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::trim).filter(|s| !s.is_empty()))
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) if !s.trim().is_empty() => vec![s.trim().to_string()],
        _ => Vec::new(),
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').trim().parse().ok(),
        _ => None,
    }
}

fn verdict_of(m: &Map<String, Value>) -> Option<FoundVerdict> {
    let raw = number(m.get("score"));
    let pass = m.get("pass").and_then(|v| match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "pass" | "passed" => Some(true),
            "false" | "no" | "fail" | "failed" => Some(false),
            _ => None,
        },
        _ => None,
    });
    if raw.is_none() && pass.is_none() {
        return None;
    }
    let score = match raw {
        Some(s) if s.is_finite() && s > 1.0 && s <= 100.0 => s / 100.0,
        Some(s) if s.is_finite() => s.clamp(0.0, 1.0),
        // Only a pass/fail: full marks or none.
        _ => {
            if pass == Some(true) {
                1.0
            } else {
                0.0
            }
        }
    };
    let notes = match m.get("notes") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Array(_)) => strings(m.get("notes")).join("; "),
        _ => String::new(),
    };
    Some(FoundVerdict {
        pass: pass.unwrap_or(true),
        score,
        notes,
        reasons: strings(m.get("reasons")),
        labels: strings(m.get("labels")),
    })
}

/// The verdict in a review's output, if it has one: a JSON object with a
/// `score` (0..1, or percent) and/or `pass`, optional `notes`, `reasons`,
/// `labels`.
pub fn verdict(text: &str) -> Option<FoundVerdict> {
    verdict_of(&json_object(text)?)
}

/// The verdicts of a batch review: `{"items": [{"subject": ..., "score": ...,
/// ...}]}`, as `(subject, verdict)` in the order given. Items without a
/// subject or a verdict are left out.
pub fn batch_verdicts(text: &str) -> Option<Vec<(String, FoundVerdict)>> {
    let m = json_object(text)?;
    let Some(Value::Array(items)) = m.get("items") else {
        return None;
    };
    Some(
        items
            .iter()
            .filter_map(|i| {
                let o = i.as_object()?;
                let subject = o.get("subject")?.as_str()?.trim().to_string();
                Some((subject, verdict_of(o)?))
            })
            .collect(),
    )
}

/// The `labels` an output's JSON object carries, if any.
pub fn labels(text: &str) -> Vec<String> {
    json_object(text)
        .map(|m| strings(m.get("labels")))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_found_in_prose_fences_and_plain_json() {
        let v = verdict(r#"{"pass": false, "score": 0.62, "notes": "Drop the hype."}"#).unwrap();
        assert_eq!(
            (v.pass, v.score, v.notes.as_str()),
            (false, 0.62, "Drop the hype.")
        );
        let fenced = "Here is my verdict:\n```json\n{\"score\": 91, \"labels\": [\"campaign_launch\"]}\n```\nThanks.";
        let v = verdict(fenced).unwrap();
        assert!((v.score - 0.91).abs() < 1e-9);
        assert!(v.pass);
        assert_eq!(v.labels, vec!["campaign_launch"]);
        let v = verdict("Verdict: {\"pass\": \"no\", \"notes\": [\"a\", \"b\"]} end").unwrap();
        assert_eq!((v.pass, v.score, v.notes.as_str()), (false, 0.0, "a; b"));
        assert!(verdict("Looks good to me!").is_none());
        assert!(verdict(r#"{"summary": "no verdict here"}"#).is_none());
    }

    #[test]
    fn batch_verdicts_keep_order_and_skip_broken_items() {
        let out = r#"{"items": [
            {"subject": "r1/draft", "pass": true, "score": 0.9},
            {"score": 0.4},
            {"subject": "r2/draft", "pass": false, "score": 0.5, "notes": "too long"}
        ]}"#;
        let items = batch_verdicts(out).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].0, "r1/draft");
        assert_eq!(items[1].1.notes, "too long");
        assert!(batch_verdicts("{\"pass\": true}").is_none());
    }

    #[test]
    fn labels_come_from_the_json_object() {
        assert_eq!(
            labels(r#"{"output": "x", "labels": ["major_brand_changes"]}"#),
            vec!["major_brand_changes"]
        );
        assert!(labels("plain text").is_empty());
    }
}
