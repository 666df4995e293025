//! The learners: what the library's items say when read together.
//!
//! - [`trend_report`]: the week's rising design terms, palettes and typefaces
//!   (this window against the one before), and how much of the week's
//!   inspiration carries a recognised pattern (`pattern_recognition`).
//! - [`campaign_insights`]: what high-performing campaigns share (topics,
//!   format, weekday and hour, palette), from the analytics records.
//!
//! Both are pure and deterministic: the same items and time give the same
//! report, so a recomputation changes nothing unless the items did.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::colour::{Lab, parse_hex, to_hex};
use crate::extract::trends::terms;
use crate::extract::{Trend, TrendOptions, trends_with};
use crate::model::{Item, Kind};

/// Laplace-smoothed growth of a share: `((current+1)/(n_current+2)) /
/// ((previous+1)/(n_previous+2))`, the same rule as [`Trend::growth`].
fn growth(current: f64, n_current: f64, previous: f64, n_previous: f64) -> f64 {
    ((current + 1.0) / (n_current + 2.0)) / ((previous + 1.0) / (n_previous + 2.0))
}

/// A colour family whose use is rising.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RisingColour {
    /// The family's colour: the share-weighted mean of its swatches this window.
    pub hex: String,
    /// Items of this window using it, weighted by the share of each picture it covers.
    pub current: f64,
    /// The same for the window before.
    pub previous: f64,
    /// Items of this window using it at all.
    pub items: u32,
    /// Smoothed growth of its weighted share of items (1.0 = flat).
    pub growth: f64,
}

/// A typeface whose use is rising.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RisingTypeface {
    /// The family as first written this window.
    pub family: String,
    /// Items of this window using it.
    pub current: u32,
    /// Items of the window before using it.
    pub previous: u32,
    /// Smoothed growth of its share of items (1.0 = flat).
    pub growth: f64,
}

/// The weekly trend report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendReport {
    /// Start of the window (exclusive), ms since the Unix epoch.
    pub window_start_ms: i64,
    /// End of the window (inclusive): when the report was computed.
    pub window_end_ms: i64,
    /// Inspiration items in the window.
    pub items_current: u32,
    /// Inspiration items in the window before.
    pub items_previous: u32,
    /// Rising terms and two-word phrases, highest growth first.
    pub terms: Vec<Trend>,
    /// Rising colour families, highest growth first.
    pub palettes: Vec<RisingColour>,
    /// Rising typefaces, highest growth first.
    pub typefaces: Vec<RisingTypeface>,
    /// Share (0..=1) of the window's items that carry a recognised pattern: a
    /// visual concept, a rising term, a rising typeface or a rising colour.
    pub pattern_recognition: f64,
}

/// Tuning of [`trend_report`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrendReportOptions {
    /// The window (a week).
    pub window: Duration,
    /// A term, colour family or typeface must be used by at least this many
    /// items of the window (3).
    pub min_items: u32,
    /// At most this many of each list (20).
    pub limit: usize,
}

impl Default for TrendReportOptions {
    fn default() -> Self {
        TrendReportOptions {
            window: Duration::from_secs(7 * 24 * 3600),
            min_items: 3,
            limit: 20,
        }
    }
}

/// Whether an item is inspiration (what trends are read from): not analytics
/// records or feedback.
pub fn is_inspiration(item: &Item) -> bool {
    !matches!(
        item.kind,
        Kind::Analytics | Kind::Feedback | Kind::Deliverable
    ) && item.is_live()
}

/// The colour family of a swatch: a cell of a coarse CIELAB grid (ΔL 20,
/// Δa/Δb 32), so near shades count together and the cells are stable.
fn colour_cell(lab: Lab) -> (i32, i32, i32) {
    (
        (lab.l / 20.0).floor() as i32,
        (lab.a / 32.0).floor() as i32,
        (lab.b / 32.0).floor() as i32,
    )
}

fn item_text(item: &Item) -> String {
    let mut s = String::with_capacity(item.title.len() + item.text.len() + 64);
    s.push_str(&item.title);
    s.push('\n');
    s.push_str(&item.text);
    for c in &item.concepts {
        s.push('\n');
        s.push_str(c);
    }
    s
}

/// The trend report at `now_ms` over `items` (those that are not inspiration
/// are skipped): the window `(now - window, now]` against the window before.
pub fn trend_report(items: &[Item], now_ms: i64, opts: &TrendReportOptions) -> TrendReport {
    let w = i64::try_from(opts.window.as_millis()).unwrap_or(i64::MAX);
    let start = now_ms.saturating_sub(w);
    let before = start.saturating_sub(w);
    let window_of = |t: i64| -> Option<bool> {
        if t > start && t <= now_ms {
            Some(true)
        } else if t > before && t <= start {
            Some(false)
        } else {
            None
        }
    };
    let inspiration: Vec<(&Item, bool)> = items
        .iter()
        .filter(|i| is_inspiration(i))
        .filter_map(|i| window_of(i.time_ms()).map(|cur| (i, cur)))
        .collect();
    let n_cur = inspiration.iter().filter(|(_, c)| *c).count() as u32;
    let n_prev = inspiration.len() as u32 - n_cur;

    let texts: Vec<(i64, String)> = inspiration
        .iter()
        .map(|(i, _)| (i.time_ms(), item_text(i)))
        .collect();
    let borrowed: Vec<(i64, &str)> = texts.iter().map(|(t, s)| (*t, s.as_str())).collect();
    let terms_found = trends_with(
        &borrowed,
        opts.window,
        now_ms,
        &TrendOptions {
            min_count: opts.min_items,
            limit: opts.limit,
        },
    );

    // Colour families: weighted by share, and the weighted mean colour per cell.
    #[derive(Default)]
    struct Cell {
        current: f64,
        previous: f64,
        items: u32,
        lab_sum: (f64, f64, f64),
        weight: f64,
    }
    let mut cells: BTreeMap<(i32, i32, i32), Cell> = BTreeMap::new();
    // Typefaces by lowercase family.
    let mut fonts: BTreeMap<String, (String, u32, u32)> = BTreeMap::new();
    for (item, current) in &inspiration {
        let mut seen_cells = BTreeSet::new();
        for s in &item.palette {
            let Ok(rgb) = parse_hex(&s.hex) else { continue };
            let lab = Lab::from_rgb(rgb);
            let key = colour_cell(lab);
            let cell = cells.entry(key).or_default();
            let share = f64::from(s.share.clamp(0.0, 1.0));
            if *current {
                cell.current += share;
                cell.lab_sum.0 += lab.l * share;
                cell.lab_sum.1 += lab.a * share;
                cell.lab_sum.2 += lab.b * share;
                cell.weight += share;
                if seen_cells.insert(key) {
                    cell.items += 1;
                }
            } else {
                cell.previous += share;
            }
        }
        let families: BTreeSet<(String, &str)> = item
            .typography
            .iter()
            .map(|f| (f.family.trim().to_lowercase(), f.family.trim()))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        for (key, written) in families {
            let e = fonts
                .entry(key)
                .or_insert_with(|| (written.to_string(), 0, 0));
            if *current {
                e.1 += 1;
            } else {
                e.2 += 1;
            }
        }
    }
    let (fc, fp) = (f64::from(n_cur), f64::from(n_prev));
    let mut palettes: Vec<RisingColour> = cells
        .into_iter()
        .filter(|(_, c)| c.items >= opts.min_items && c.weight > 0.0)
        .map(|(_, c)| {
            let lab = Lab {
                l: c.lab_sum.0 / c.weight,
                a: c.lab_sum.1 / c.weight,
                b: c.lab_sum.2 / c.weight,
            };
            RisingColour {
                hex: to_hex(lab.to_rgb()),
                current: round3(c.current),
                previous: round3(c.previous),
                items: c.items,
                growth: round3(growth(c.current, fc, c.previous, fp)),
            }
        })
        .filter(|c| c.growth > 1.0)
        .collect();
    palettes.sort_by(|a, b| {
        b.growth
            .total_cmp(&a.growth)
            .then(b.current.total_cmp(&a.current))
            .then(a.hex.cmp(&b.hex))
    });
    palettes.truncate(opts.limit);
    let mut typefaces: Vec<RisingTypeface> = fonts
        .into_values()
        .filter(|(_, cur, _)| *cur >= opts.min_items)
        .map(|(family, current, previous)| RisingTypeface {
            family,
            current,
            previous,
            growth: round3(growth(f64::from(current), fc, f64::from(previous), fp)),
        })
        .filter(|t| t.growth > 1.0)
        .collect();
    typefaces.sort_by(|a, b| {
        b.growth
            .total_cmp(&a.growth)
            .then(b.current.cmp(&a.current))
            .then(a.family.cmp(&b.family))
    });
    typefaces.truncate(opts.limit);

    // Coverage: items of this window carrying at least one recognised pattern.
    let rising_terms: BTreeSet<&str> = terms_found.iter().map(|t| t.term.as_str()).collect();
    let rising_fonts: BTreeSet<String> =
        typefaces.iter().map(|t| t.family.to_lowercase()).collect();
    let rising_cells: BTreeSet<(i32, i32, i32)> = palettes
        .iter()
        .filter_map(|p| parse_hex(&p.hex).ok())
        .map(|rgb| colour_cell(Lab::from_rgb(rgb)))
        .collect();
    let covered = inspiration
        .iter()
        .zip(&texts)
        .filter(|((_, current), _)| *current)
        .filter(|((item, _), (_, text))| {
            !item.concepts.is_empty()
                || item
                    .typography
                    .iter()
                    .any(|f| rising_fonts.contains(&f.family.trim().to_lowercase()))
                || item.palette.iter().any(|s| {
                    parse_hex(&s.hex)
                        .is_ok_and(|rgb| rising_cells.contains(&colour_cell(Lab::from_rgb(rgb))))
                })
                || terms(text)
                    .iter()
                    .any(|t| rising_terms.contains(t.as_str()))
        })
        .count();
    TrendReport {
        window_start_ms: start,
        window_end_ms: now_ms,
        items_current: n_cur,
        items_previous: n_prev,
        terms: terms_found,
        palettes,
        typefaces,
        pattern_recognition: if n_cur == 0 {
            0.0
        } else {
            round3(covered as f64 / fc)
        },
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn day(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| ms.to_string())
}

impl TrendReport {
    /// The report as Markdown, the context handed to agents.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Design trends, {} to {}\n\n{} inspiration items this week, {} the week before; {:.0}% carry a recognised pattern.\n",
            day(self.window_start_ms),
            day(self.window_end_ms),
            self.items_current,
            self.items_previous,
            self.pattern_recognition * 100.0
        );
        s.push_str("## Rising terms\n");
        if self.terms.is_empty() {
            s.push_str("- none this week\n");
        }
        for t in &self.terms {
            let _ = writeln!(
                s,
                "- {} ({} items, {} the week before, growth {:.2})",
                t.term, t.current, t.previous, t.growth
            );
        }
        s.push_str("\n## Rising palettes\n");
        if self.palettes.is_empty() {
            s.push_str("- none this week\n");
        }
        for p in &self.palettes {
            let _ = writeln!(
                s,
                "- {} ({} items, weighted {:.2} against {:.2}, growth {:.2})",
                p.hex, p.items, p.current, p.previous, p.growth
            );
        }
        s.push_str("\n## Rising typefaces\n");
        if self.typefaces.is_empty() {
            s.push_str("- none this week\n");
        }
        for t in &self.typefaces {
            let _ = writeln!(
                s,
                "- {} ({} items, {} the week before, growth {:.2})",
                t.family, t.current, t.previous, t.growth
            );
        }
        s
    }
}

/// One thing high performers have in common.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    /// The topic, format, weekday (`Tuesday`), hour (`09:00`) or colour (`#rrggbb`).
    pub value: String,
    /// High performers that have it.
    pub high: u32,
    /// Their share of the high performers, 0..=1.
    pub share: f64,
    /// How much more common it is among high performers than among the rest
    /// (share among high ÷ share among the rest, smoothed); absent when every
    /// record counts as a high performer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lift: Option<f64>,
}

/// What high-performing campaigns share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignInsights {
    /// When computed, ms since the Unix epoch.
    pub computed_ms: i64,
    /// Campaign records read.
    pub campaigns: u32,
    /// Of them, the high performers.
    pub high_performers: u32,
    /// The field performance was measured by (`engagement_rate`, ...), when the
    /// records have one; else every record is taken as a high performer (the
    /// source is a folder of high performers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<String>,
    /// The value a record needs to be a high performer (the top quartile's floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Topics, most shared first.
    pub topics: Vec<Shared>,
    /// Formats (video, carousel, email, ...).
    pub formats: Vec<Shared>,
    /// Weekdays published on.
    pub weekdays: Vec<Shared>,
    /// Hours published at (UTC).
    pub hours: Vec<Shared>,
    /// Colours used.
    pub palette: Vec<Shared>,
}

/// Fields read as the performance measure, in order of preference.
pub const MEASURES: &[&str] = &[
    "engagement_rate",
    "engagement",
    "ctr",
    "click_through_rate",
    "conversion_rate",
    "conversions",
    "roi",
    "score",
    "performance",
];
const TOPIC_FIELDS: &[&str] = &["topic", "topics", "theme", "themes", "tags", "category"];
const FORMAT_FIELDS: &[&str] = &["format", "content_type", "type", "medium", "channel"];
const PALETTE_FIELDS: &[&str] = &["palette", "colors", "colours", "color", "colour"];

/// What one record contributes to a tally: its topics, its format, ...
type ValuesOf<'a> = dyn Fn(&Item, &BTreeMap<String, String>) -> BTreeSet<String> + 'a;

/// One analytics record as the library stores it: `key: value` lines.
fn record(item: &Item) -> BTreeMap<String, String> {
    item.text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn list(v: &str) -> Vec<String> {
    v.trim_matches(['[', ']'])
        .split([',', ';', '|'])
        .map(|s| s.trim().trim_matches('"').trim().to_lowercase())
        .filter(|s| !s.is_empty() && s.len() <= 100)
        .collect()
}

fn number(v: &str) -> Option<f64> {
    let v = v.trim().trim_end_matches('%');
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// What the high performers among `items` (analytics records; other kinds are
/// skipped) share, at `now_ms`.
pub fn campaign_insights(items: &[Item], now_ms: i64) -> CampaignInsights {
    let records: Vec<(&Item, BTreeMap<String, String>)> = items
        .iter()
        .filter(|i| i.kind == Kind::Analytics && i.is_live())
        .map(|i| (i, record(i)))
        .collect();
    let n = records.len();
    // The measure: the first field that is a number in at least half the records.
    let measure = MEASURES.iter().find(|m| {
        let numeric = records
            .iter()
            .filter(|(_, r)| r.get(**m).and_then(|v| number(v)).is_some())
            .count();
        n > 0 && numeric * 2 >= n
    });
    let mut threshold = None;
    let high: Vec<bool> = match measure {
        Some(m) if n >= 4 => {
            let mut values: Vec<f64> = records
                .iter()
                .filter_map(|(_, r)| r.get(*m).and_then(|v| number(v)))
                .collect();
            values.sort_by(f64::total_cmp);
            // The top quartile's floor: the smallest of the best quarter (at least one).
            let top = values.len().div_ceil(4).max(1);
            let t = values[values.len() - top];
            threshold = Some(t);
            records
                .iter()
                .map(|(_, r)| r.get(*m).and_then(|v| number(v)).is_some_and(|v| v >= t))
                .collect()
        }
        _ => vec![true; n],
    };
    let n_high = high.iter().filter(|h| **h).count() as u32;
    let n_rest = n as u32 - n_high;
    let tally = |values: &ValuesOf<'_>| {
        let mut counts: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for ((item, r), is_high) in records.iter().zip(&high) {
            for v in values(item, r) {
                let c = counts.entry(v).or_default();
                if *is_high {
                    c.0 += 1;
                } else {
                    c.1 += 1;
                }
            }
        }
        let mut out: Vec<Shared> = counts
            .into_iter()
            .filter(|(_, (h, _))| *h > 0)
            .map(|(value, (h, rest))| Shared {
                value,
                high: h,
                share: round3(f64::from(h) / f64::from(n_high.max(1))),
                lift: (n_rest > 0).then(|| {
                    round3(growth(
                        f64::from(h),
                        f64::from(n_high),
                        f64::from(rest),
                        f64::from(n_rest),
                    ))
                }),
            })
            .collect();
        out.sort_by(|a, b| {
            b.high
                .cmp(&a.high)
                .then(b.lift.unwrap_or(0.0).total_cmp(&a.lift.unwrap_or(0.0)))
                .then(a.value.cmp(&b.value))
        });
        out.truncate(10);
        out
    };
    let field_values = |fields: &'static [&'static str]| {
        move |_: &Item, r: &BTreeMap<String, String>| -> BTreeSet<String> {
            fields
                .iter()
                .filter_map(|f| r.get(*f))
                .flat_map(|v| list(v))
                .collect()
        }
    };
    let topics = tally(&|item: &Item, r: &BTreeMap<String, String>| {
        let mut s: BTreeSet<String> = field_values(TOPIC_FIELDS)(item, r);
        s.extend(item.tags.iter().map(|t| t.to_lowercase()));
        s
    });
    let formats = tally(&field_values(FORMAT_FIELDS));
    let when = |item: &Item| {
        item.published_ms
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    };
    let weekdays = tally(&|item: &Item, _: &BTreeMap<String, String>| {
        when(item)
            .map(|t| format!("{:?}", t.weekday()))
            .map(|d| weekday_name(&d).to_string())
            .into_iter()
            .collect()
    });
    let hours = tally(&|item: &Item, r: &BTreeMap<String, String>| {
        // A record's own time of day when its date had none.
        when(item)
            .filter(|t| t.hour() != 0 || t.minute() != 0)
            .map(|t| format!("{:02}:00", t.hour()))
            .or_else(|| {
                ["hour", "time", "send_time", "posted_at_hour"]
                    .iter()
                    .filter_map(|f| r.get(*f))
                    .find_map(|v| {
                        v.split(':')
                            .next()
                            .and_then(|h| h.trim().parse::<u32>().ok())
                            .filter(|h| *h < 24)
                    })
                    .map(|h| format!("{h:02}:00"))
            })
            .into_iter()
            .collect()
    });
    let palette = tally(&|item: &Item, r: &BTreeMap<String, String>| {
        let mut s: BTreeSet<String> = PALETTE_FIELDS
            .iter()
            .filter_map(|f| r.get(*f))
            .flat_map(|v| list(v))
            .filter_map(|c| parse_hex(&c).ok())
            .map(to_hex)
            .collect();
        s.extend(item.palette.iter().map(|p| p.hex.clone()));
        s
    });
    CampaignInsights {
        computed_ms: now_ms,
        campaigns: n as u32,
        high_performers: n_high,
        measure: measure.map(|m| (*m).to_string()),
        threshold,
        topics,
        formats,
        weekdays,
        hours,
        palette,
    }
}

fn weekday_name(short: &str) -> &'static str {
    match short {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    }
}

impl CampaignInsights {
    /// The insights as Markdown, the context handed to content-creator.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# What high-performing campaigns share\n");
        match (&self.measure, self.threshold) {
            (Some(m), Some(t)) => {
                let _ = writeln!(
                    s,
                    "{} of {} campaigns are high performers (top quartile by {m}, at least {t}).\n",
                    self.high_performers, self.campaigns
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "{} high-performing campaigns read.\n",
                    self.high_performers
                );
            }
        }
        for (title, list) in [
            ("Topics", &self.topics),
            ("Formats", &self.formats),
            ("Weekdays", &self.weekdays),
            ("Hours (UTC)", &self.hours),
            ("Palette", &self.palette),
        ] {
            let _ = writeln!(s, "## {title}");
            if list.is_empty() {
                s.push_str("- not in the records\n");
            }
            for x in list {
                let _ = match x.lift {
                    Some(l) => writeln!(
                        s,
                        "- {}: {:.0}% of high performers ({:.1}× the rest)",
                        x.value,
                        x.share * 100.0,
                        l
                    ),
                    None => writeln!(
                        s,
                        "- {}: {:.0}% of high performers",
                        x.value,
                        x.share * 100.0
                    ),
                };
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FontUse, Swatch};

    const DAY: i64 = 24 * 3600 * 1000;
    const NOW: i64 = 1_795_000_000_000;

    fn item(kind: Kind, n: usize, at: i64) -> Item {
        Item {
            id: format!("{n:064x}"),
            kind,
            source: "siteinspire".into(),
            source_key: format!("k{n}"),
            url: None,
            title: String::new(),
            text: String::new(),
            media_type: None,
            size: 1,
            tags: vec![],
            notes: String::new(),
            collections: vec![],
            palette: vec![],
            typography: vec![],
            concepts: vec![],
            published_ms: Some(at),
            ingested_ms: at,
            updated_ms: at,
            replaces: None,
            superseded_by: None,
            removed_ms: None,
        }
    }

    fn page(n: usize, at: i64, title: &str, hex: &str, font: &str) -> Item {
        let mut i = item(Kind::Page, n, at);
        i.title = title.into();
        i.palette = vec![Swatch {
            hex: hex.into(),
            share: 0.6,
        }];
        i.typography = vec![FontUse {
            family: font.into(),
            fallbacks: vec![],
            sizes: vec![],
            weights: vec![],
            uses: 1,
        }];
        i
    }

    fn week() -> Vec<Item> {
        let mut items = Vec::new();
        // The week before: muted greys and Helvetica, talk of gradients.
        for n in 0..6 {
            items.push(page(
                n,
                NOW - 10 * DAY,
                "soft gradient hero",
                "#8a8a8a",
                "Helvetica",
            ));
        }
        // This week: neon green and Space Grotesk, brutalist grids.
        for n in 6..14 {
            items.push(page(
                n,
                NOW - 2 * DAY,
                "brutalist grid portfolio",
                if n % 2 == 0 { "#39ff14" } else { "#2ef00f" },
                "Space Grotesk",
            ));
        }
        items.push(page(20, NOW - DAY, "plain page", "#8a8a8a", "Helvetica"));
        // Analytics do not count as inspiration.
        let mut a = item(Kind::Analytics, 30, NOW - DAY);
        a.title = "brutalist grid".into();
        items.push(a);
        items
    }

    #[test]
    fn the_weeks_rising_terms_palettes_and_typefaces() {
        let r = trend_report(&week(), NOW, &TrendReportOptions::default());
        assert_eq!((r.items_current, r.items_previous), (9, 6));
        assert!(
            r.terms.iter().any(|t| t.term == "brutalist grid"),
            "{:?}",
            r.terms
        );
        assert!(!r.terms.iter().any(|t| t.term.contains("gradient")));
        assert_eq!(r.typefaces.len(), 1);
        assert_eq!(r.typefaces[0].family, "Space Grotesk");
        assert_eq!((r.typefaces[0].current, r.typefaces[0].previous), (8, 0));
        // The two greens are one family; the grey is not rising.
        assert_eq!(r.palettes.len(), 1, "{:?}", r.palettes);
        assert_eq!(r.palettes[0].items, 8);
        let green = parse_hex(&r.palettes[0].hex).unwrap();
        assert!(green[1] > 200 && green[0] < 80, "{}", r.palettes[0].hex);
        // 8 of the 9 items of the week carry a rising pattern; "plain page" does not.
        assert_eq!(r.pattern_recognition, round3(8.0 / 9.0));
        let md = r.to_markdown();
        assert!(
            md.contains("Space Grotesk") && md.contains("brutalist grid"),
            "{md}"
        );
    }

    #[test]
    fn the_report_is_the_same_from_run_to_run_and_in_any_order() {
        let mut items = week();
        let a = trend_report(&items, NOW, &TrendReportOptions::default());
        items.reverse();
        let b = trend_report(&items, NOW, &TrendReportOptions::default());
        assert_eq!(a, b);
    }

    #[test]
    fn an_empty_week_is_an_empty_report() {
        let r = trend_report(&[], NOW, &TrendReportOptions::default());
        assert_eq!(r.items_current, 0);
        assert_eq!(r.pattern_recognition, 0.0);
        assert!(r.terms.is_empty() && r.palettes.is_empty() && r.typefaces.is_empty());
        assert!(r.to_markdown().contains("none this week"));
    }

    fn campaign(n: usize, rate: f64, topic: &str, format: &str, at: &str, palette: &str) -> Item {
        let mut i = item(Kind::Analytics, n, 0);
        i.title = format!("campaign {n}");
        i.text = format!(
            "campaign_id: c{n}\nengagement_rate: {rate}\ntopics: {topic}\nformat: {format}\npalette: {palette}"
        );
        i.published_ms = chrono::DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|t| t.timestamp_millis());
        i
    }

    #[test]
    fn high_performers_share_topic_format_time_and_palette() {
        let mut items = Vec::new();
        // Four winners: AI topics, video, Tuesdays at nine, electric blue.
        for n in 0..4 {
            items.push(campaign(
                n,
                0.09 + n as f64 / 1000.0,
                "ai; automation",
                "video",
                "2026-10-06T09:15:00Z",
                "#1a73e8, #ffffff",
            ));
        }
        // Twelve others: mixed.
        for n in 4..16 {
            items.push(campaign(
                n,
                0.01 + n as f64 / 1000.0,
                if n % 2 == 0 { "pricing" } else { "ai" },
                if n % 3 == 0 { "carousel" } else { "email" },
                "2026-10-08T15:00:00Z",
                "#ffffff",
            ));
        }
        let c = campaign_insights(&items, NOW);
        assert_eq!(c.campaigns, 16);
        assert_eq!(c.measure.as_deref(), Some("engagement_rate"));
        assert_eq!(c.high_performers, 4);
        assert_eq!(c.formats[0].value, "video");
        assert_eq!(c.formats[0].share, 1.0);
        assert!(c.formats[0].lift.unwrap() > 2.0);
        // Both topics are in every winner; automation, in none of the rest, ranks first.
        assert_eq!(c.topics[0].value, "automation");
        assert_eq!(c.topics[1].value, "ai");
        assert_eq!(c.topics[1].high, 4);
        let automation = c.topics.iter().find(|t| t.value == "automation").unwrap();
        assert!(automation.lift.unwrap() > 3.0);
        assert_eq!(c.weekdays[0].value, "Tuesday");
        assert_eq!(c.hours[0].value, "09:00");
        assert!(
            c.palette
                .iter()
                .any(|p| p.value == "#1a73e8" && p.high == 4)
        );
        let md = c.to_markdown();
        assert!(
            md.contains("4 of 16 campaigns") && md.contains("video"),
            "{md}"
        );
    }

    #[test]
    fn a_folder_of_winners_without_a_measure_counts_them_all() {
        let items: Vec<Item> = (0..3)
            .map(|n| {
                let mut i = item(Kind::Analytics, n, 0);
                i.text = "campaign: spring\nformat: reel".into();
                i
            })
            .collect();
        let c = campaign_insights(&items, NOW);
        assert_eq!((c.campaigns, c.high_performers), (3, 3));
        assert_eq!(c.measure, None);
        assert_eq!(c.formats[0].value, "reel");
        assert_eq!(c.formats[0].lift, None);
    }
}
