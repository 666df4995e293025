//! Which extractors run on an item: a source's `extractor`/`extract` list
//! ([`Extractors::from_names`]), all of the default ones when it has none.
//!
//! | name | runs |
//! |---|---|
//! | `color_palettes` / `colour_palettes` | [`super::palette`] on images |
//! | `typography_patterns` | [`super::typography`] on pages and stylesheets |
//! | `visual_concepts` | [`super::concepts`], every vocabulary entry but techniques |
//! | `creative_techniques` | [`super::concepts`], techniques only ([`TECHNIQUES`]) |
//! | `design_trends` | the item's text counts in the trend report (the learner reads it) |
//! | `industry_insights` | [`insights`]: market-signal sentences, kept in the item's notes |
//!
//! With a list, only what it names runs: a source with `extract:
//! [colour_palettes]` gets palettes and no typography or concepts. An image's
//! bytes are still kept, a page's text still read.

/// The concepts counted as creative techniques (the rest are visual concepts).
pub const TECHNIQUES: &[&str] = &[
    "collage",
    "risograph",
    "halftone",
    "duotone",
    "glitch",
    "blur",
    "texture",
    "isometric",
    "illustration",
    "claymorphism",
    "parallax",
    "custom cursor",
    "character design",
    "wireframe",
];

/// Most insight sentences kept per item.
pub const MAX_INSIGHTS: usize = 8;
/// Longest insight sentence kept, in characters.
pub const MAX_INSIGHT_CHARS: usize = 280;
/// Most text read for insights, in bytes.
pub const MAX_INSIGHT_INPUT: usize = 64 * 1024;

/// The extractors to run on an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extractors {
    /// Dominant colours of images.
    pub palettes: bool,
    /// Fonts of pages and stylesheets.
    pub typography: bool,
    /// Visual concepts (not techniques).
    pub concepts: bool,
    /// Creative techniques.
    pub techniques: bool,
    /// The item counts in the trend report.
    pub trends: bool,
    /// Industry insights from the text.
    pub insights: bool,
}

impl Default for Extractors {
    /// Every default extractor (industry insights only when asked for).
    fn default() -> Self {
        Extractors {
            palettes: true,
            typography: true,
            concepts: true,
            techniques: true,
            trends: true,
            insights: false,
        }
    }
}

impl Extractors {
    /// None.
    pub fn none() -> Self {
        Extractors {
            palettes: false,
            typography: false,
            concepts: false,
            techniques: false,
            trends: false,
            insights: false,
        }
    }

    /// The extractors `names` select (a source's `extractor`/`extract`); the
    /// defaults when `names` is empty. Unknown names select nothing (the
    /// studio check refuses them).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        if names.is_empty() {
            return Self::default();
        }
        let mut x = Self::none();
        for n in names {
            match n.as_ref().trim().to_ascii_lowercase().as_str() {
                "color_palettes" | "colour_palettes" => x.palettes = true,
                "typography_patterns" => x.typography = true,
                "visual_concepts" => x.concepts = true,
                "creative_techniques" => x.techniques = true,
                "design_trends" => x.trends = true,
                "industry_insights" => x.insights = true,
                _ => {}
            }
        }
        x
    }

    /// Keeps the concepts the selection asks for.
    pub fn filter_concepts(&self, concepts: Vec<String>) -> Vec<String> {
        concepts
            .into_iter()
            .filter(|c| {
                if TECHNIQUES.contains(&c.as_str()) {
                    self.techniques
                } else {
                    self.concepts
                }
            })
            .collect()
    }
}

/// Words that mark a sentence as a market signal.
const SIGNALS: &[&str] = &[
    "launch",
    "launched",
    "launches",
    "raises",
    "raised",
    "funding",
    "acquire",
    "acquires",
    "acquired",
    "acquisition",
    "revenue",
    "growth",
    "grew",
    "market",
    "industry",
    "brands",
    "agencies",
    "adoption",
    "share",
    "demand",
    "survey",
    "report",
    "forecast",
    "trend",
    "shift",
    "rebrand",
    "rebrands",
    "announces",
    "announced",
    "partnership",
    "investment",
];

/// Sentences of `text` that carry an industry signal: a signal word, or a
/// figure (a percentage, a currency amount, a year), at most [`MAX_INSIGHTS`],
/// each cut to [`MAX_INSIGHT_CHARS`], in text order, without repeats. Reads
/// at most [`MAX_INSIGHT_INPUT`] bytes.
pub fn insights(text: &str) -> Vec<String> {
    let mut end = text.len().min(MAX_INSIGHT_INPUT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut read = &text[..end];
    if end < text.len() {
        // Cut: the last sentence is partial.
        read = read
            .rfind(['.', '!', '?', '\n'])
            .map_or(read, |at| &read[..at]);
    }
    let mut out: Vec<String> = Vec::new();
    for sentence in read.split(['.', '!', '?', '\n']) {
        let s = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
        if s.split_whitespace().count() < 4 {
            continue;
        }
        let lower = s.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric() && c != '%' && c != '$' && c != '€')
            .filter(|w| !w.is_empty())
            .collect();
        let signal = words.iter().any(|w| SIGNALS.contains(w));
        let figure = words.iter().any(|w| {
            w.ends_with('%')
                || w.starts_with('$')
                || w.starts_with('€')
                || (w.len() == 4 && w.starts_with("20") && w.chars().all(|c| c.is_ascii_digit()))
        });
        if !(signal || figure) {
            continue;
        }
        let cut: String = s.chars().take(MAX_INSIGHT_CHARS).collect();
        if !out.contains(&cut) {
            out.push(cut);
        }
        if out.len() >= MAX_INSIGHTS {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_select_only_what_they_name() {
        let x = Extractors::from_names(&["colour_palettes"]);
        assert!(x.palettes && !x.typography && !x.concepts && !x.insights);
        assert_eq!(Extractors::from_names::<&str>(&[]), Extractors::default());
        let x = Extractors::from_names(&["creative_techniques"]);
        assert_eq!(
            x.filter_concepts(vec!["collage".into(), "minimalism".into()]),
            vec!["collage".to_string()]
        );
    }

    #[test]
    fn insights_come_from_a_small_corpus() {
        let corpus = "Loved the new poster. Figma launches a design tool for brands today! \
                      Agencies report 34% more demand for motion work in 2026. \
                      Coffee was great\nNothing else here to say really";
        let found = insights(corpus);
        assert_eq!(
            found,
            vec![
                "Figma launches a design tool for brands today".to_string(),
                "Agencies report 34% more demand for motion work in 2026".to_string(),
            ]
        );
        assert!(insights("").is_empty());
        // Bounded on any input.
        let long = "Brands report strong growth. ".repeat(10_000);
        assert_eq!(insights(&long).len(), 1);
        let many: String = (0..100)
            .map(|i| format!("Brand {i} announces a launch now. "))
            .collect();
        assert_eq!(insights(&many).len(), MAX_INSIGHTS);
    }
}
