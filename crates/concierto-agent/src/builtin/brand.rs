//! The brand-alignment scorer: simple, configurable rules that score a text in
//! 0..1 the way `agents/brand-guardian.md` describes — start at 1.0, subtract
//! 0.3 for a risky claim, 0.2 for an off-brand voice or visual, 0.1 for a minor
//! slip; pass at 0.85 with no risky claim.
//!
//! Rules come from `rules.yaml` (or `rules.yml`, `rules.json`) in the studio's
//! brand folder; every key is optional and defaults to [`BrandRules::default`]:
//!
//! ```yaml
//! vocabulary: [studio, craft, care, clear]   # the brand's own words
//! min_vocabulary: 1                           # distinct ones a text must use
//! banned: [unlock, game-changer]              # hype words (voice, -0.2 each)
//! risky_claims: [guaranteed, risk-free]       # claims no input backs (-0.3 each, blocks a pass)
//! max_sentence_words: 30                      # any longer sentence: -0.1
//! max_mean_sentence_words: 22                 # mean above it: -0.1
//! max_exclamations: 1                         # more: -0.1 (more than 3x as many: -0.2)
//! max_shouting_words: 2                       # ALL-CAPS words of 4+ letters allowed
//! palette: ["#1f3a5f", "#f4efe6"]             # hex colours allowed; empty: not checked
//! major_change_phrases: [new logo, rebrand]   # label the output `major_brand_changes`
//! pass_score: 0.85
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use yaml_rust2::{Yaml, YamlLoader};

use super::text::{contains_phrase, round2, sentences, word_count, words};
use crate::error::AgentError;

/// Deduction for a factual or legal risk.
pub const RISK: f64 = 0.3;
/// Deduction for an off-brand voice or visual.
pub const OFF_BRAND: f64 = 0.2;
/// Deduction for a minor slip.
pub const MINOR: f64 = 0.1;

/// The label that asks a person to approve a change to the brand itself.
pub const MAJOR_BRAND_CHANGES: &str = "major_brand_changes";

/// What the scorer checks. See the module documentation for the file format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrandRules {
    /// The brand's own words; a text should use some of them.
    pub vocabulary: Vec<String>,
    /// Distinct vocabulary words a text must use to avoid a deduction.
    pub min_vocabulary: usize,
    /// Hype and off-voice words; each one found costs 0.2.
    pub banned: Vec<String>,
    /// Claims that are a legal or factual risk; each costs 0.3 and blocks
    /// a pass.
    pub risky_claims: Vec<String>,
    /// Longest sentence allowed, in words.
    pub max_sentence_words: usize,
    /// Highest mean sentence length allowed, in words.
    pub max_mean_sentence_words: f64,
    /// Exclamation marks allowed in the whole text.
    pub max_exclamations: usize,
    /// ALL-CAPS words (four letters or more) allowed.
    pub max_shouting_words: usize,
    /// Hex colours the design system allows; empty: colours are not checked.
    pub palette: Vec<String>,
    /// Phrases that mean the work changes the brand itself.
    pub major_change_phrases: Vec<String>,
    /// Lowest passing score.
    pub pass_score: f64,
}

impl Default for BrandRules {
    fn default() -> Self {
        BrandRules {
            vocabulary: list(
                "\
                studio, craft, care, careful, clear, clarity, warm, precise, thoughtful, story, \
                people, together, design, honest, simple",
            ),
            min_vocabulary: 1,
            banned: list(
                "\
                unlock, unleash, game-changer, game changer, game-changing, revolutionary, \
                revolutionize, revolutionise, disrupt, disruptive, synergy, synergies, \
                best-in-class, world-class, cutting-edge, next-level, rockstar, ninja, guru, \
                crushing it, insane, mind-blowing, epic, killer, leverage, supercharge, 10x",
            ),
            risky_claims: list(
                "\
                guaranteed, guarantee, risk-free, no risk, 100% proven, clinically proven, \
                best in the world, number one in, cures",
            ),
            max_sentence_words: 30,
            max_mean_sentence_words: 22.0,
            max_exclamations: 1,
            max_shouting_words: 2,
            palette: Vec::new(),
            major_change_phrases: list(
                "\
                new logo, logo change, new palette, new colour palette, new color palette, \
                new tagline, new typeface, rebrand, rebranding",
            ),
            pass_score: 0.85,
        }
    }
}

/// A comma-separated list.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The files looked for in a brand folder, in order.
pub const RULES_FILES: &[&str] = &["rules.yaml", "rules.yml", "rules.json"];

impl BrandRules {
    /// The rules in `dir` (the first of [`RULES_FILES`] found), or the defaults
    /// when the folder has none. A folder that does not exist is an error.
    pub fn load_dir(dir: &Path) -> Result<Self, AgentError> {
        if !dir.is_dir() {
            return Err(AgentError::BrandIo {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such folder: create it or pass no brand folder",
                ),
            });
        }
        for name in RULES_FILES {
            let path = dir.join(name);
            if path.is_file() {
                return Self::load_file(&path);
            }
        }
        Ok(Self::default())
    }

    /// The rules in one YAML or JSON file.
    pub fn load_file(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::BrandIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses rules from YAML (JSON is YAML too).
    pub fn parse(path: &Path, text: &str) -> Result<Self, AgentError> {
        let bad = |why: String| AgentError::BrandRules {
            path: PathBuf::from(path),
            why,
        };
        let docs = YamlLoader::load_from_str(text).map_err(|e| {
            bad(format!(
                "line {}: not valid YAML: {}",
                e.marker().line() + 1,
                e.info()
            ))
        })?;
        let value = match docs.into_iter().next() {
            None | Some(Yaml::Null) => return Ok(Self::default()),
            Some(doc @ Yaml::Hash(_)) => yaml_to_json(&doc),
            Some(_) => {
                return Err(bad(
                    "expected a map of rules (vocabulary, banned, ...)".into()
                ));
            }
        };
        let rules: BrandRules = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        if !(0.0..=1.0).contains(&rules.pass_score) {
            return Err(bad(format!(
                "pass_score must be in 0..1, found {}",
                rules.pass_score
            )));
        }
        Ok(rules)
    }

    /// True when `phrase` holds a banned word or a risky claim.
    pub fn is_off_brand(&self, phrase: &str) -> bool {
        let ws = words(phrase);
        self.banned
            .iter()
            .chain(&self.risky_claims)
            .any(|b| contains_phrase(&ws, b) > 0)
    }

    /// Scores `text` against the rules.
    pub fn score(&self, text: &str) -> BrandReport {
        let ws = words(text);
        let ss = sentences(text);
        let lengths: Vec<usize> = ss.iter().map(|s| word_count(s)).collect();
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let mean = if lengths.is_empty() {
            0.0
        } else {
            lengths.iter().sum::<usize>() as f64 / lengths.len() as f64
        };
        let exclamations = text.chars().filter(|&c| c == '!').count();
        let vocabulary_found: Vec<String> = self
            .vocabulary
            .iter()
            .filter(|v| contains_phrase(&ws, v) > 0)
            .cloned()
            .collect();
        let checked = Checked {
            words: ws.len(),
            sentences: ss.len(),
            mean_sentence_words: round2(mean),
            longest_sentence_words: longest,
            exclamations,
            vocabulary_found: vocabulary_found.clone(),
        };
        if ws.is_empty() {
            return BrandReport {
                pass: false,
                score: 0.0,
                notes: "Nothing to review: the task carried no draft. Send the producer's output as an input.".into(),
                reasons: vec!["empty: there is no text to score".into()],
                labels: Vec::new(),
                risky: true,
                checked,
            };
        }

        let mut deductions: Vec<(f64, String, String)> = Vec::new(); // (cost, reason, fix)
        let mut risky = false;
        for claim in &self.risky_claims {
            let n = contains_phrase(&ws, claim);
            if n > 0 {
                risky = true;
                deductions.push((
                    RISK,
                    format!("claim: '{claim}'{} is a promise no input backs", times(n)),
                    format!("remove or back the claim '{claim}'"),
                ));
            }
        }
        let mut hype = Vec::new();
        for word in &self.banned {
            let n = contains_phrase(&ws, word);
            if n > 0 {
                hype.push(word.clone());
                deductions.push((
                    OFF_BRAND,
                    format!("voice: hype word '{word}'{}", times(n)),
                    String::new(),
                ));
            }
        }
        if let Some(first) = deductions.iter_mut().find(|d| d.0 == OFF_BRAND) {
            first.2 = format!("replace the hype words ({})", hype.join(", "));
        }
        if !self.palette.is_empty() {
            let allowed: Vec<String> = self.palette.iter().map(|c| normalize_hex(c)).collect();
            let mut off = Vec::new();
            for c in hex_colours(text) {
                if !allowed.contains(&c) && !off.contains(&c) {
                    off.push(c);
                }
            }
            for c in &off {
                deductions.push((
                    OFF_BRAND,
                    format!("visual: colour {c} is not in the palette"),
                    format!("use a palette colour instead of {c}"),
                ));
            }
        }
        if exclamations > self.max_exclamations {
            let cost = if exclamations > 3 * self.max_exclamations.max(1) {
                OFF_BRAND
            } else {
                MINOR
            };
            deductions.push((
                cost,
                format!(
                    "voice: {exclamations} exclamation marks (at most {})",
                    self.max_exclamations
                ),
                format!("use at most {} exclamation mark(s)", self.max_exclamations),
            ));
        }
        let long = lengths
            .iter()
            .filter(|&&n| n > self.max_sentence_words)
            .count();
        if long > 0 {
            deductions.push((
                MINOR,
                format!(
                    "voice: {long} sentence(s) over {} words (longest {longest})",
                    self.max_sentence_words
                ),
                format!(
                    "split sentences longer than {} words",
                    self.max_sentence_words
                ),
            ));
        }
        if mean > self.max_mean_sentence_words {
            deductions.push((
                MINOR,
                format!(
                    "voice: sentences average {:.1} words (at most {})",
                    mean, self.max_mean_sentence_words
                ),
                "shorten the sentences".into(),
            ));
        }
        let shouting: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 4 && w.chars().all(|c| c.is_uppercase()))
            .collect();
        if shouting.len() > self.max_shouting_words {
            deductions.push((
                MINOR,
                format!(
                    "voice: {} words in capitals ({})",
                    shouting.len(),
                    shouting
                        .iter()
                        .take(3)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "write words in capitals in normal case".into(),
            ));
        }
        if vocabulary_found.len() < self.min_vocabulary {
            deductions.push((
                MINOR,
                format!(
                    "voice: uses {} of the brand's words (at least {}: {})",
                    vocabulary_found.len(),
                    self.min_vocabulary,
                    self.vocabulary
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "use the studio's own words".into(),
            ));
        }
        // Most severe first; stable within a severity.
        deductions.sort_by(|a, b| b.0.total_cmp(&a.0));
        let total: f64 = deductions.iter().map(|d| d.0).sum();
        let score = round2((1.0 - total).clamp(0.0, 1.0));
        let pass = score >= self.pass_score && !risky;

        let mut labels = Vec::new();
        if self
            .major_change_phrases
            .iter()
            .any(|p| contains_phrase(&ws, p) > 0)
        {
            labels.push(MAJOR_BRAND_CHANGES.to_string());
        }
        let fixes: Vec<&str> = deductions
            .iter()
            .map(|d| d.2.as_str())
            .filter(|f| !f.is_empty())
            .collect();
        let mut notes = if deductions.is_empty() {
            "On brand: the voice is clear and calm, sentences are short, and there are no hype words or risky claims.".to_string()
        } else if pass {
            format!(
                "Passes at {score:.2} with a minor slip; before it ships: {}.",
                fixes.join("; ")
            )
        } else {
            format!(
                "Score {score:.2} is below the {:.2} needed to pass{}. To fix: {}.",
                self.pass_score,
                if risky { " and a claim is a risk" } else { "" },
                fixes.join("; ")
            )
        };
        if !labels.is_empty() {
            notes.push_str(
                " It changes the brand itself (logo, palette, tagline or type), so a person must approve it.",
            );
        }
        BrandReport {
            pass,
            score,
            notes,
            reasons: deductions.into_iter().map(|d| d.1).collect(),
            labels,
            risky,
            checked,
        }
    }
}

fn times(n: usize) -> String {
    if n > 1 {
        format!(" ({n}×)")
    } else {
        String::new()
    }
}

/// `#ABC` → `#aabbcc`; other forms lowercased.
fn normalize_hex(c: &str) -> String {
    let c = c.trim().trim_start_matches('#').to_ascii_lowercase();
    if c.len() == 3 {
        let expanded: String = c.chars().flat_map(|ch| [ch, ch]).collect();
        format!("#{expanded}")
    } else {
        format!("#{c}")
    }
}

/// Hex colours (`#abc`, `#aabbcc`) written in a text, normalised.
fn hex_colours(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == '#' {
            let run: String = bytes[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if (run.len() == 3 || run.len() == 6) && run.chars().all(|c| c.is_ascii_hexdigit()) {
                out.push(normalize_hex(&run));
            }
            i += run.len() + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The scorer's findings.
#[derive(Debug, Clone, PartialEq)]
pub struct BrandReport {
    /// Score at least `pass_score` and no risky claim.
    pub pass: bool,
    /// In 0..1, two decimals.
    pub score: f64,
    /// One paragraph the producer can act on.
    pub notes: String,
    /// Each deduction, most severe first; empty on a clean pass.
    pub reasons: Vec<String>,
    /// `major_brand_changes` when the text changes the brand itself.
    pub labels: Vec<String>,
    /// A claim is a factual or legal risk.
    pub risky: bool,
    /// What was measured.
    pub checked: Checked,
}

/// What the scorer measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checked {
    /// Words in the text.
    pub words: usize,
    /// Sentences in the text.
    pub sentences: usize,
    /// Mean words per sentence.
    pub mean_sentence_words: f64,
    /// Words in the longest sentence.
    pub longest_sentence_words: usize,
    /// `!` in the text.
    pub exclamations: usize,
    /// Brand vocabulary the text uses.
    pub vocabulary_found: Vec<String>,
}

/// A YAML document as JSON, for serde.
fn yaml_to_json(y: &Yaml) -> serde_json::Value {
    use serde_json::Value;
    match y {
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(r.clone()), Value::Number),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Real(r) => r.clone(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_text_passes_with_no_reasons() {
        let r = BrandRules::default().score(
            "Our studio shapes each story with care. The new season brings warm colours and clear type.",
        );
        assert!(r.pass, "{r:?}");
        assert_eq!(r.score, 1.0);
        assert!(r.reasons.is_empty());
    }

    #[test]
    fn hype_and_risk_cost_what_the_role_file_says() {
        let r = BrandRules::default().score("Our studio will unlock growth. Results guaranteed.");
        assert!((r.score - 0.5).abs() < 1e-9, "{r:?}");
        assert!(r.risky && !r.pass);
        assert!(
            r.reasons[0].starts_with("claim:"),
            "most severe first: {r:?}"
        );
    }

    #[test]
    fn palette_and_major_changes_are_checked() {
        let rules = BrandRules {
            palette: vec!["#1F3A5F".into(), "#fff".into()],
            ..Default::default()
        };
        let r =
            rules.score("A clear studio look: #1f3a5f on #ffffff, accents in #ff00ff. A new logo.");
        assert_eq!(r.reasons, ["visual: colour #ff00ff is not in the palette"]);
        assert_eq!(r.labels, [MAJOR_BRAND_CHANGES]);
    }

    #[test]
    fn rules_parse_from_yaml_with_defaults_for_missing_keys() {
        let r = BrandRules::parse(
            Path::new("rules.yaml"),
            "banned: [synergy]\nmax_exclamations: 0\npass_score: 0.9\n",
        )
        .unwrap();
        assert_eq!(r.banned, ["synergy"]);
        assert_eq!(r.max_exclamations, 0);
        assert_eq!(r.pass_score, 0.9);
        assert_eq!(r.max_sentence_words, 30);
        let e = BrandRules::parse(Path::new("rules.yaml"), "banend: [x]\n").unwrap_err();
        assert!(e.to_string().contains("banend"), "{e}");
    }
}
