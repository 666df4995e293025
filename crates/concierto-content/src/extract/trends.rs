//! Terms and two-word phrases that rise: how many items mention each in the
//! latest window against the window before it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A term whose use is rising.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// A word or a two-word phrase, lowercase.
    pub term: String,
    /// Items mentioning it in the latest window.
    pub current: u32,
    /// Items mentioning it in the window before.
    pub previous: u32,
    /// How much its share of items grew, smoothed (Laplace):
    /// `((current+1)/(n_current+2)) / ((previous+1)/(n_previous+2))`, where
    /// `n_*` are the items in each window.
    pub growth: f64,
}

/// Tuning for [`trends_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrendOptions {
    /// A term must be in at least this many items of the latest window.
    pub min_count: u32,
    /// At most this many trends are returned.
    pub limit: usize,
}

impl Default for TrendOptions {
    fn default() -> Self {
        TrendOptions {
            min_count: 3,
            limit: 50,
        }
    }
}

const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "done",
    "down",
    "during",
    "each",
    "even",
    "every",
    "few",
    "for",
    "from",
    "further",
    "get",
    "gets",
    "got",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "however",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "let",
    "like",
    "made",
    "make",
    "makes",
    "many",
    "may",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "my",
    "myself",
    "new",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "per",
    "really",
    "same",
    "see",
    "she",
    "should",
    "since",
    "so",
    "some",
    "still",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "two",
    "under",
    "until",
    "up",
    "us",
    "use",
    "used",
    "using",
    "very",
    "via",
    "was",
    "way",
    "we",
    "well",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "yet",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "amp",
    "com",
    "http",
    "https",
    "www",
    "html",
    "rt",
    "quot",
    "nbsp",
];

static STOPWORD_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| STOPWORDS.iter().copied().collect());

fn is_stopword(w: &str) -> bool {
    STOPWORD_SET.contains(w)
}

fn keep(w: &str) -> bool {
    let has_alpha = w.chars().any(char::is_alphabetic);
    let long_enough =
        w.chars().count() >= 3 || (has_alpha && w.chars().any(|c| c.is_ascii_digit()));
    has_alpha && long_enough && !is_stopword(w)
}

/// The distinct words and adjacent word pairs of a text (stopwords removed;
/// pairs never span punctuation or a stopword).
pub(crate) fn terms(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for clause in text.split(['.', ',', ';', ':', '!', '?', '\n', '(', ')', '|', '"']) {
        let mut prev: Option<String> = None;
        for raw in clause.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '\'')) {
            let w = raw
                .trim_matches(|c: char| c == '-' || c == '\'')
                .to_lowercase();
            let w = w.strip_suffix("'s").map(str::to_string).unwrap_or(w);
            if w.is_empty() {
                continue;
            }
            if keep(&w) {
                if let Some(p) = &prev {
                    out.insert(format!("{p} {w}"));
                }
                out.insert(w.clone());
                prev = Some(w);
            } else {
                prev = None;
            }
        }
    }
    out
}

/// Rising terms with the default [`TrendOptions`].
pub fn trends(items: &[(i64, &str)], window: Duration, now_ms: i64) -> Vec<Trend> {
    trends_with(items, window, now_ms, &TrendOptions::default())
}

/// Terms and two-word phrases mentioned by more items (as a share of all
/// items) in the window `(now - window, now]` than in the window before it,
/// highest growth first (ties: more mentions first, then by term).
///
/// `items` are `(published ms since the Unix epoch, text)`; items outside both
/// windows are ignored. Deterministic.
pub fn trends_with(
    items: &[(i64, &str)],
    window: Duration,
    now_ms: i64,
    options: &TrendOptions,
) -> Vec<Trend> {
    let w = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    if w == 0 {
        return Vec::new();
    }
    let current_start = now_ms.saturating_sub(w);
    let previous_start = current_start.saturating_sub(w);
    let mut counts: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let (mut n_current, mut n_previous) = (0u32, 0u32);
    for (t, text) in items {
        let current = if *t > current_start && *t <= now_ms {
            n_current += 1;
            true
        } else if *t > previous_start && *t <= current_start {
            n_previous += 1;
            false
        } else {
            continue;
        };
        for term in terms(text) {
            let c = counts.entry(term).or_default();
            if current {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
    }
    let rate = |count: u32, n: u32| (f64::from(count) + 1.0) / (f64::from(n) + 2.0);
    let mut out: Vec<Trend> = counts
        .into_iter()
        .filter(|(_, (c, _))| *c >= options.min_count.max(1))
        .map(|(term, (current, previous))| Trend {
            growth: rate(current, n_current) / rate(previous, n_previous),
            term,
            current,
            previous,
        })
        .filter(|t| t.growth > 1.0 && t.current > t.previous)
        .collect();
    out.sort_by(|a, b| {
        b.growth
            .total_cmp(&a.growth)
            .then(b.current.cmp(&a.current))
            .then(a.term.cmp(&b.term))
    });
    out.truncate(options.limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn rising_terms_and_phrases_come_first() {
        let now = 100 * DAY;
        let mut items: Vec<(i64, String)> = Vec::new();
        // The week before: serif posters, one bento grid.
        for i in 0..10 {
            items.push((
                now - 10 * DAY + i,
                format!("Classic serif poster number {i}"),
            ));
        }
        items.push((now - 9 * DAY, "A bento grid portfolio".into()));
        // This week: bento grids everywhere, serif steady.
        for i in 0..8 {
            items.push((now - DAY - i, "The bento grid landing page, again".into()));
        }
        for i in 0..3 {
            items.push((now - 2 * DAY - i, format!("Classic serif poster {i}")));
        }
        // Too old to count.
        items.push((now - 30 * DAY, "bento grid bento grid".into()));
        let refs: Vec<(i64, &str)> = items.iter().map(|(t, s)| (*t, s.as_str())).collect();
        let got = trends(&refs, Duration::from_secs(7 * 86_400), now);
        let terms: Vec<&str> = got.iter().map(|t| t.term.as_str()).collect();
        assert!(terms.contains(&"bento grid"), "{got:#?}");
        assert!(terms.contains(&"landing page"), "{got:#?}");
        assert!(!terms.contains(&"serif"), "serif fell: {got:#?}");
        assert!(!terms.contains(&"the"), "stopword: {got:#?}");
        let bento = got.iter().find(|t| t.term == "bento grid").unwrap();
        assert_eq!((bento.current, bento.previous), (8, 1));
        assert!(got.windows(2).all(|w| w[0].growth >= w[1].growth));
        assert_eq!(trends(&refs, Duration::from_secs(7 * 86_400), now), got);
    }

    #[test]
    fn minimum_count_and_empty_input() {
        let now = 10 * DAY;
        let items = [
            (now - 1, "glassmorphism dashboard"),
            (now - 2, "glassmorphism icons"),
        ];
        assert!(trends(&items, Duration::from_secs(86_400), now).is_empty());
        let opts = TrendOptions {
            min_count: 2,
            limit: 10,
        };
        let got = trends_with(&items, Duration::from_secs(86_400), now, &opts);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].term, "glassmorphism");
        assert!(trends(&[], Duration::from_secs(86_400), now).is_empty());
        assert!(trends(&items, Duration::ZERO, now).is_empty());
    }

    #[test]
    fn phrases_do_not_span_punctuation_or_stopwords() {
        let t = terms("Dark mode, grain. The risograph of posters");
        assert!(t.contains("dark mode"));
        assert!(!t.contains("mode grain"));
        assert!(!t.contains("risograph posters"));
        assert!(t.contains("risograph"));
    }
}
