//! Plain-text analysis the builtin executor is made of: words, sentences, key
//! phrases, figures. Everything is deterministic: ties are broken by first
//! occurrence, never by hash order.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Common English words, words of task instructions and the words of the
/// builtin executor's own templates, left out of key phrases.
const STOPWORDS: &str = "\
    a about above after again against all also am an and any are aren't as at be because \
    been before being below between both but by can could did do does doing don't down \
    during each etc even every few for from further get gets got had has have having he \
    her here hers herself him himself his how however i if in into is isn't it it's its \
    itself just let like may me might more most much must my myself new no nor not now \
    of off on once one only or other our ours ourselves out over own per same shall she \
    should so some such than that the their theirs them themselves then there these they \
    this those three through to today today's too two under until up upon us use used \
    very via was we were what when where which while who whom why will with within \
    without would yes yet you your yours yourself many make makes made well way ways \
    thing things week weeks day days time times year years based using across still \
    write writes summarise summarize suggest report describe propose find decide check \
    give list produce draft relevant each \
    piece pieces channel audience headline body notes note reviewers reviewer builtin \
    builtin-v1 executor drafted deterministic offline model called key points point \
    terms term next actions action brief generated input inputs instruction step steps \
    task tasks role sources source trigger phrases phrase post caption variant";

fn stopwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| STOPWORDS.split_whitespace().collect())
}

/// True for a word left out of key phrases.
pub fn is_stopword(w: &str) -> bool {
    stopwords().contains(w)
}

/// A word worth counting: not a stopword, at least three characters, more
/// letters than digits (so no dates, times or ids).
pub fn is_content_word(w: &str) -> bool {
    let letters = w.chars().filter(|c| c.is_alphabetic()).count();
    let digits = w.chars().filter(|c| c.is_numeric()).count();
    w.chars().count() >= 3 && letters > digits && !is_stopword(w)
}

/// Lowercase words: runs of letters, digits, inner `-` and `'` (typographic
/// apostrophes count as `'`); a trailing possessive `'s` is dropped.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        let w = cur.trim_matches(|c| c == '-' || c == '\'');
        let w = w.strip_suffix("'s").unwrap_or(w);
        if !w.is_empty() {
            out.push(w.to_lowercase());
        }
        cur.clear();
    };
    for c in text.chars() {
        let c = if c == '\u{2019}' { '\'' } else { c };
        if c.is_alphanumeric() || c == '-' || c == '\'' {
            cur.push(c);
        } else {
            flush(&mut cur, &mut out);
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// Words separated by whitespace: the builtin executor's token estimate.
pub fn token_estimate(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX)
}

/// The text of a line without its Markdown markup (heading and list markers,
/// quotes, emphasis, code ticks, table bars).
fn strip_markup(line: &str) -> String {
    let mut l = line.trim();
    l = l.trim_start_matches('#').trim_start();
    l = l.trim_start_matches('>').trim_start();
    if let Some(rest) = l.strip_prefix("- ").or_else(|| l.strip_prefix("* ")) {
        l = rest;
    }
    let digits = l.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && l[digits..].starts_with(". ") {
        l = &l[digits + 2..];
    }
    l.replace(['`', '*', '|'], " ")
        .replace("__", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sentences of a text: Markdown markup stripped, every line its own
/// boundary, then split after `.`, `!` or `?` followed by a space (so `0.05`
/// stays whole). Code fences and table rules are skipped; pieces without a
/// letter are dropped.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for raw in text.lines() {
        let t = raw.trim();
        if t.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ' | '=')) {
            continue;
        }
        let line = strip_markup(t);
        let mut cur = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            cur.push(c);
            if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()) {
                push_sentence(&mut out, &cur);
                cur.clear();
            }
        }
        push_sentence(&mut out, &cur);
    }
    out
}

fn push_sentence(out: &mut Vec<String>, s: &str) {
    let s = s.trim();
    if s.chars().any(char::is_alphabetic) {
        out.push(s.to_string());
    }
}

/// True for a sentence that reads as prose rather than a list of terms: fewer
/// than one comma per three words.
pub fn is_prose(s: &str) -> bool {
    let commas = s.chars().filter(|&c| c == ',' || c == ';').count();
    commas * 3 < word_count(s)
}

/// How many words a sentence has.
pub fn word_count(s: &str) -> usize {
    words(s).len()
}

/// The most frequent key phrases of `texts`: two-word phrases of content words
/// that occur at least twice, then single content words, most frequent first,
/// ties in order of first occurrence. `keep` filters candidates (e.g. banned
/// words). At most `n`.
pub fn key_phrases(texts: &[&str], n: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut uni: Counter = Counter::default();
    let mut bi: Counter = Counter::default();
    for text in texts {
        for sentence in sentences(text) {
            let ws = words(&sentence);
            for (i, w) in ws.iter().enumerate() {
                if is_content_word(w) {
                    uni.add(w);
                    if let Some(next) = ws.get(i + 1)
                        && is_content_word(next)
                        && next != w
                    {
                        bi.add(&format!("{w} {next}"));
                    }
                }
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for (phrase, count) in bi.ranked() {
        if out.len() >= n.div_ceil(2) || count < 2 {
            break;
        }
        if keep(&phrase) {
            out.push(phrase);
        }
    }
    for (word, _) in uni.ranked() {
        if out.len() >= n {
            break;
        }
        let covered = out.iter().any(|p| p.split(' ').any(|x| x == word));
        if !covered && keep(&word) {
            out.push(word);
        }
    }
    out
}

/// Counts in order of first occurrence.
#[derive(Default)]
struct Counter {
    index: HashMap<String, usize>,
    items: Vec<(String, usize)>,
}

impl Counter {
    fn add(&mut self, key: &str) {
        match self.index.get(key) {
            Some(&i) => self.items[i].1 += 1,
            None => {
                self.index.insert(key.to_string(), self.items.len());
                self.items.push((key.to_string(), 1));
            }
        }
    }

    /// Most frequent first; ties keep first-occurrence order (stable sort).
    fn ranked(mut self) -> Vec<(String, usize)> {
        self.items.sort_by_key(|b| std::cmp::Reverse(b.1));
        self.items
    }
}

/// The `k` sentences of `texts` that carry the most of `terms`, in their
/// original order; each has `min_words..=max_words` words and passes `keep`.
pub fn best_sentences(
    texts: &[&str],
    terms: &[String],
    k: usize,
    min_words: usize,
    max_words: usize,
    keep: impl Fn(&str) -> bool,
) -> Vec<String> {
    let term_words: Vec<&str> = terms.iter().flat_map(|t| t.split(' ')).collect();
    let mut scored: Vec<(usize, usize, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for text in texts {
        for s in sentences(text) {
            let n = word_count(&s);
            if n < min_words || n > max_words || !keep(&s) || !seen.insert(s.clone()) {
                continue;
            }
            let hits = words(&s)
                .iter()
                .filter(|w| term_words.contains(&w.as_str()))
                .count();
            if hits > 0 {
                scored.push((hits, scored.len(), s));
            }
        }
    }
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    scored.sort_by_key(|s| s.1);
    scored.into_iter().map(|s| s.2).collect()
}

/// How many times the lowercase word sequence `text_words` contains `phrase`:
/// whole words only (`unlock` does not match `unlocking`; list `game-changer`
/// and `game changer` to catch both spellings).
pub fn contains_phrase(text_words: &[String], phrase: &str) -> usize {
    let p = words(phrase);
    if p.is_empty() || p.len() > text_words.len() {
        return 0;
    }
    text_words
        .windows(p.len())
        .filter(|w| w.iter().zip(&p).all(|(a, b)| a == b))
        .count()
}

/// A figure found in a text, with the words just before it as its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The value (a percentage is kept as written: `12%` is 12).
    pub value: f64,
    /// True when written with `%`.
    pub percent: bool,
    /// As written (`1,200`, `12%`, `$3.50`).
    pub text: String,
    /// Up to two words before it, e.g. `engagement rate`.
    pub label: String,
}

/// Figures in `text`: whitespace- or `=`-separated tokens that are wholly a
/// number once surrounding punctuation is removed — an optional sign and
/// currency sign, digits with optional thousands commas, an optional decimal
/// part, an optional `%`. Dates, times and ids (`2026-11-24`, `09:00`,
/// `run-42`) are not figures.
pub fn figures(text: &str) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut previous: Vec<String> = Vec::new();
    for raw in text.split(|c: char| c.is_whitespace() || c == '=') {
        let t = raw.trim_matches(|c: char| {
            matches!(
                c,
                ',' | '.' | ';' | ':' | '(' | ')' | '[' | ']' | '{' | '}' | '"' | '\'' | '|'
            )
        });
        match parse_figure(t) {
            Some((value, percent)) => {
                let label = previous
                    .iter()
                    .rev()
                    .take(2)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push(Figure {
                    value,
                    percent,
                    text: t.to_string(),
                    label,
                });
                previous.clear();
            }
            None => {
                let ws = words(t);
                if ws.is_empty() {
                    continue;
                }
                for w in ws {
                    if is_stopword(&w) && !previous.is_empty() {
                        previous.clear();
                    }
                    if !is_stopword(&w) {
                        previous.push(w);
                    }
                }
            }
        }
    }
    out
}

fn parse_figure(t: &str) -> Option<(f64, bool)> {
    let (t, negative) = match t.strip_prefix('-').or_else(|| t.strip_prefix('\u{2212}')) {
        Some(rest) => (rest, true),
        None => (t.strip_prefix('+').unwrap_or(t), false),
    };
    let t = t.strip_prefix(['$', '\u{20ac}', '\u{a3}']).unwrap_or(t);
    let (t, percent) = match t.strip_suffix('%') {
        Some(rest) => (rest, true),
        None => (t, false),
    };
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    if int.is_empty() || !int.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let groups: Vec<&str> = int.split(',').collect();
    let grouped_ok =
        groups.len() == 1 || (groups[0].len() <= 3 && groups[1..].iter().all(|g| g.len() == 3));
    if !grouped_ok || !groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit())) {
        return None;
    }
    if let Some(f) = frac
        && (f.is_empty() || !f.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let plain = match frac {
        Some(f) => format!("{}.{f}", groups.concat()),
        None => groups.concat(),
    };
    let v: f64 = plain.parse().ok()?;
    Some((if negative { -v } else { v }, percent))
}

/// `content-creator` → `Content creator`.
pub fn role_title(role: &str) -> String {
    capitalize(&role.replace('-', " "))
}

/// The first letter in upper case.
pub fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Every word capitalised, except short joining words after the first.
pub fn title_case(s: &str) -> String {
    s.split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            if i > 0 && matches!(w, "and" | "or" | "of" | "the" | "a" | "an" | "for" | "in") {
                w.to_string()
            } else {
                capitalize(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first `n` words of `s`, with `…` when cut.
pub fn first_words(s: &str, n: usize) -> String {
    let ws: Vec<&str> = s.split_whitespace().collect();
    if ws.len() <= n {
        ws.join(" ")
    } else {
        format!("{}…", ws[..n].join(" "))
    }
}

/// `s` cut at a word boundary to at most `max` characters, with `…` when cut.
pub fn clip_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    for w in s.split_whitespace() {
        if out.chars().count() + w.chars().count() + 2 > max {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out.push('…');
    out
}

/// A number for people: integers without decimals, others with up to two.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Rounded to two decimals, for stable scores.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_inner_hyphens_and_drop_possessives() {
        assert_eq!(
            words("The studio's Off-Brand logo — game-changer!"),
            ["the", "studio", "off-brand", "logo", "game-changer"]
        );
    }

    #[test]
    fn sentences_split_on_lines_and_stops_not_decimals() {
        let s =
            sentences("## Title\nRate fell to 0.05 today. Why? Because.\n|---|---|\n- item one");
        assert_eq!(
            s,
            [
                "Title",
                "Rate fell to 0.05 today.",
                "Why?",
                "Because.",
                "item one"
            ]
        );
    }

    #[test]
    fn key_phrases_prefer_repeated_pairs_then_frequent_words() {
        let t = "Brand colours matter. Our brand colours are warm. Typography matters. Typography and colour.";
        let k = key_phrases(&[t], 4, |_| true);
        assert_eq!(k[0], "brand colours");
        assert!(k.contains(&"typography".to_string()), "{k:?}");
    }

    #[test]
    fn figures_are_whole_numbers_not_dates() {
        let f = figures(
            "engagement rate 0.04, visits 1,200 and 12% growth on 2026-11-24 at 09:00 ($3.50)",
        );
        let v: Vec<f64> = f.iter().map(|f| f.value).collect();
        assert_eq!(v, [0.04, 1200.0, 12.0, 3.5]);
        assert_eq!(f[0].label, "engagement rate");
        assert!(f[2].percent);
    }

    #[test]
    fn phrases_match_whole_words() {
        let w = words("We unlock value; unlocking is not it. A game changer.");
        assert_eq!(contains_phrase(&w, "unlock"), 1);
        assert_eq!(contains_phrase(&w, "game changer"), 1);
        assert_eq!(contains_phrase(&w, "game-changer"), 0);
    }
}
