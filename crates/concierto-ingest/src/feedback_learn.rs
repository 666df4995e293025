//! The feedback learner: what people said, from the processed feedback the
//! feedback router exports into a `training_data` source's folder
//! (`user_feedback: /feedback/processed/`), summarised for the source's
//! `learner` role (user-researcher) as context `feedback-insights:<source>`.

use std::collections::BTreeMap;

use concierto_content::Item;

/// The context name prefix of a source's feedback insights.
pub const FEEDBACK_INSIGHTS: &str = "feedback-insights";
/// Most recent pieces of feedback quoted.
pub const MAX_QUOTED: usize = 20;
/// Longest quote, in characters.
pub const MAX_QUOTE_CHARS: usize = 400;

/// What the processed feedback of one source says.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeedbackInsights {
    /// Pieces of feedback read.
    pub items: usize,
    /// How many per tag (category and channel, as the records carry them).
    pub by_tag: BTreeMap<String, usize>,
    /// The latest pieces, newest first: title and text, cut.
    pub latest: Vec<String>,
    /// When computed (ms since the Unix epoch).
    pub computed_ms: i64,
}

fn cut(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > MAX_QUOTE_CHARS {
        let head: String = flat.chars().take(MAX_QUOTE_CHARS - 3).collect();
        format!("{head}...")
    } else {
        flat
    }
}

/// Summarises `items` (feedback records of one source).
pub fn feedback_insights(items: &[Item], now_ms: i64) -> FeedbackInsights {
    let mut by_tag = BTreeMap::new();
    for i in items {
        for t in &i.tags {
            *by_tag.entry(t.clone()).or_insert(0) += 1;
        }
    }
    let mut sorted: Vec<&Item> = items.iter().collect();
    sorted.sort_by_key(|i| std::cmp::Reverse(i.published_ms.unwrap_or(i.ingested_ms)));
    let latest = sorted
        .iter()
        .take(MAX_QUOTED)
        .map(|i| {
            if i.title.is_empty() {
                cut(&i.text)
            } else {
                cut(&format!("{}: {}", i.title, i.text))
            }
        })
        .collect();
    FeedbackInsights {
        items: items.len(),
        by_tag,
        latest,
        computed_ms: now_ms,
    }
}

impl FeedbackInsights {
    /// As Markdown, for an agent's context.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Processed feedback\n\n{} pieces of feedback from people, answered by the studio.\n",
            self.items
        );
        if !self.by_tag.is_empty() {
            out.push_str("\n## By category and channel\n\n");
            for (tag, n) in &self.by_tag {
                out.push_str(&format!("- {tag}: {n}\n"));
            }
        }
        if !self.latest.is_empty() {
            out.push_str("\n## Latest\n\n");
            for l in &self.latest {
                out.push_str(&format!("- {l}\n"));
            }
        }
        out
    }
}
