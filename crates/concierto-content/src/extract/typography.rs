//! Typefaces a page or stylesheet uses: `font-family` stacks, `font`
//! shorthands, sizes and weights from CSS rules and inline styles,
//! `@font-face` families, and font-service links (Google Fonts, Bunny Fonts,
//! Fontshare) in `<link>` and `@import`.

use std::collections::{BTreeSet, HashMap};

use scraper::{Html, Selector};

use crate::extract::css::{self, Rule};
use crate::model::FontUse;

const GENERIC: &[&str] = &[
    "serif",
    "sans-serif",
    "monospace",
    "cursive",
    "fantasy",
    "system-ui",
    "ui-serif",
    "ui-sans-serif",
    "ui-monospace",
    "ui-rounded",
    "emoji",
    "math",
    "fangsong",
    "-apple-system",
    "blinkmacsystemfont",
];
const WIDE_KEYWORDS: &[&str] = &["inherit", "initial", "unset", "revert", "revert-layer"];
const SIZE_KEYWORDS: &[&str] = &[
    "xx-small",
    "x-small",
    "small",
    "medium",
    "large",
    "x-large",
    "xx-large",
    "xxx-large",
    "smaller",
    "larger",
];
const SYSTEM_FONTS: &[&str] = &[
    "caption",
    "icon",
    "menu",
    "message-box",
    "small-caption",
    "status-bar",
];
const FONT_HOSTS: &[&str] = &[
    "fonts.googleapis.com",
    "fonts.bunny.net",
    "api.fontshare.com",
];
const MAX_SIZES: usize = 32;

/// The typefaces an HTML page or a CSS stylesheet uses, most used first.
///
/// Sizes and weights set in rules without a `font-family` are attributed to the
/// family set on `html`, `body`, `:root` or `*` (what they inherit), else to the
/// first family seen.
pub fn typography(html_or_css: &str) -> Vec<FontUse> {
    let mut rules = Vec::new();
    let mut links = Vec::new();
    if looks_like_html(html_or_css) {
        let doc = Html::parse_document(html_or_css);
        if let Ok(style) = Selector::parse("style") {
            for el in doc.select(&style) {
                let sheet = css::parse_sheet(&el.text().collect::<String>());
                rules.extend(sheet.rules);
                links.extend(sheet.imports);
            }
        }
        if let Ok(inline) = Selector::parse("[style]") {
            for el in doc.select(&inline) {
                if let Some(style) = el.value().attr("style") {
                    rules.push(Rule {
                        selector: el.value().name().to_string(),
                        decls: css::parse_inline(style),
                    });
                }
            }
        }
        if let Ok(link) = Selector::parse("link[href]") {
            links.extend(
                doc.select(&link)
                    .filter_map(|el| el.value().attr("href"))
                    .map(str::to_string),
            );
        }
    } else {
        let sheet = css::parse_sheet(html_or_css);
        rules = sheet.rules;
        links = sheet.imports;
    }
    collect(&rules, &links)
}

fn looks_like_html(s: &str) -> bool {
    let head: String = s
        .chars()
        .take(4096)
        .collect::<String>()
        .to_ascii_lowercase();
    head.trim_start().starts_with('<')
        || [
            "<html",
            "<head",
            "<body",
            "<style",
            "<link",
            "<div",
            "<!doctype",
        ]
        .iter()
        .any(|t| head.contains(t))
}

#[derive(Default)]
struct Acc {
    family: String,
    fallbacks: Vec<String>,
    sizes: Vec<String>,
    weights: BTreeSet<u16>,
    uses: u32,
    first_seen: usize,
}

#[derive(Default)]
struct Fonts {
    by_key: HashMap<String, usize>,
    accs: Vec<Acc>,
}

impl Fonts {
    fn entry(&mut self, family: &str) -> &mut Acc {
        let key = family.to_lowercase();
        let n = self.accs.len();
        let i = *self.by_key.entry(key).or_insert(n);
        if i == n {
            self.accs.push(Acc {
                family: family.to_string(),
                first_seen: n,
                ..Acc::default()
            });
        }
        &mut self.accs[i]
    }
}

fn add_sizes(acc: &mut Acc, sizes: &[String]) {
    for s in sizes {
        if acc.sizes.len() < MAX_SIZES && !acc.sizes.contains(s) {
            acc.sizes.push(s.clone());
        }
    }
}

fn collect(rules: &[Rule], links: &[String]) -> Vec<FontUse> {
    let vars: HashMap<&str, &str> = rules
        .iter()
        .flat_map(|r| &r.decls)
        .filter(|d| d.name.starts_with("--"))
        .map(|d| (d.name.as_str(), d.value.as_str()))
        .collect();
    let mut fonts = Fonts::default();
    let mut default_family: Option<String> = None;
    let mut orphans: Vec<(Vec<String>, Vec<u16>)> = Vec::new();

    for rule in rules {
        let get = |name: &str| -> Option<String> {
            rule.decls
                .iter()
                .rev()
                .find(|d| d.name == name)
                .map(|d| resolve_vars(&d.value, &vars))
        };
        if rule.selector == "@font-face" {
            if let Some(family) = get("font-family").and_then(|v| families(&v).into_iter().next()) {
                let acc = fonts.entry(&family);
                acc.uses += 1;
                if let Some(w) = get("font-weight") {
                    acc.weights.extend(weights(&w));
                }
            }
            continue;
        }
        let shorthand = get("font").and_then(|v| parse_font_shorthand(&v));
        let mut stack = get("font-family").map(|v| families(&v)).unwrap_or_default();
        let mut sizes = Vec::new();
        let mut ws = Vec::new();
        if let Some(sh) = shorthand {
            if stack.is_empty() {
                stack = sh.families;
            }
            sizes.extend(sh.size);
            ws.extend(sh.weight);
        }
        if let Some(size) = get("font-size").map(|s| normalise_size(&s))
            && !size.is_empty()
            && !WIDE_KEYWORDS.contains(&size.as_str())
        {
            sizes.push(size);
        }
        if let Some(w) = get("font-weight") {
            ws.extend(weights(&w));
        }
        match primary(&stack) {
            Some((family, fallbacks)) => {
                let acc = fonts.entry(&family);
                acc.uses += 1;
                if acc.fallbacks.is_empty() {
                    acc.fallbacks = fallbacks;
                }
                add_sizes(acc, &sizes);
                acc.weights.extend(ws);
                if is_root_selector(&rule.selector) {
                    default_family = Some(family);
                }
            }
            None if !sizes.is_empty() || !ws.is_empty() => orphans.push((sizes, ws)),
            None => {}
        }
    }

    for link in links {
        for (family, ws) in font_link_families(link) {
            let acc = fonts.entry(&family);
            acc.uses += 1;
            acc.weights.extend(ws);
        }
    }

    let default_family = default_family.or_else(|| fonts.accs.first().map(|a| a.family.clone()));
    if let Some(family) = default_family {
        let acc = fonts.entry(&family);
        for (sizes, ws) in orphans {
            add_sizes(acc, &sizes);
            acc.weights.extend(ws);
        }
    }

    let mut accs = fonts.accs;
    accs.sort_by(|a, b| b.uses.cmp(&a.uses).then(a.first_seen.cmp(&b.first_seen)));
    accs.into_iter()
        .map(|a| FontUse {
            family: a.family,
            fallbacks: a.fallbacks,
            sizes: a.sizes,
            weights: a.weights.into_iter().collect(),
            uses: a.uses,
        })
        .collect()
}

fn is_root_selector(selector: &str) -> bool {
    selector
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .any(|s| matches!(s.as_str(), "html" | "body" | ":root" | "*"))
}

/// Replaces `var(--name, fallback)` with the custom property's value.
fn resolve_vars(value: &str, vars: &HashMap<&str, &str>) -> String {
    let mut v = value.to_string();
    for _ in 0..8 {
        let Some(start) = v.to_ascii_lowercase().find("var(") else {
            break;
        };
        let inner_start = start + 4;
        let mut depth = 1usize;
        let mut end = None;
        for (i, c) in v[inner_start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(inner_start + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let inner = &v[inner_start..end];
        let (name, fallback) = match inner.split_once(',') {
            Some((n, f)) => (n.trim(), f.trim()),
            None => (inner.trim(), ""),
        };
        let replacement = vars.get(name).copied().unwrap_or(fallback).to_string();
        v = format!("{}{}{}", &v[..start], replacement, &v[end + 1..]);
    }
    v
}

/// The families of a `font-family` value, unquoted, in order.
fn families(value: &str) -> Vec<String> {
    css::split_top_level(value, b',')
        .into_iter()
        .map(|f| {
            let f = f.trim();
            let f = f
                .strip_prefix('"')
                .and_then(|f| f.strip_suffix('"'))
                .or_else(|| f.strip_prefix('\'').and_then(|f| f.strip_suffix('\'')))
                .unwrap_or(f);
            f.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .filter(|f| {
            !f.is_empty()
                && !f.contains(['(', ')', '{', '}', ';', '<', '>'])
                && !WIDE_KEYWORDS.contains(&f.to_ascii_lowercase().as_str())
        })
        .collect()
}

/// The first non-generic family (or the first generic one) and the rest of the stack.
fn primary(stack: &[String]) -> Option<(String, Vec<String>)> {
    let i = stack
        .iter()
        .position(|f| !GENERIC.contains(&f.to_ascii_lowercase().as_str()))
        .or(if stack.is_empty() { None } else { Some(0) })?;
    let rest = stack
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, f)| f.clone())
        .collect();
    Some((stack[i].clone(), rest))
}

fn normalise_size(v: &str) -> String {
    v.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

fn weight(token: &str) -> Option<u16> {
    match token.to_ascii_lowercase().as_str() {
        "normal" | "regular" => Some(400),
        "bold" => Some(700),
        t => t
            .parse::<f32>()
            .ok()
            .and_then(|n| (1.0..=1000.0).contains(&n).then_some(n.round() as u16)),
    }
}

/// Weights in a `font-weight` value (`bold`, `600`, or a `100 900` range).
fn weights(value: &str) -> Vec<u16> {
    value.split_whitespace().filter_map(weight).collect()
}

fn is_size(token: &str) -> bool {
    let t = token.to_ascii_lowercase();
    if SIZE_KEYWORDS.contains(&t.as_str()) {
        return true;
    }
    if ["calc(", "clamp(", "min(", "max(", "var("]
        .iter()
        .any(|f| t.starts_with(f))
    {
        return true;
    }
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    digits > 0 && digits < t.len() && {
        let unit = &t[digits..];
        unit == "%" || unit.chars().all(|c| c.is_ascii_alphabetic())
    }
}

struct Shorthand {
    size: Option<String>,
    weight: Option<u16>,
    families: Vec<String>,
}

/// `font: [style] [variant] [weight] [stretch] size[/line-height] family, ...`
fn parse_font_shorthand(value: &str) -> Option<Shorthand> {
    let toks = css::tokens(value);
    if toks.len() == 1 && SYSTEM_FONTS.contains(&toks[0].1.to_ascii_lowercase().as_str()) {
        return None;
    }
    let mut weight_found = None;
    for (i, (offset, tok)) in toks.iter().enumerate() {
        let size_part = tok.split('/').next().unwrap_or("");
        if is_size(size_part) {
            let mut rest_start = offset + tok.len();
            // A line height written apart: `16px / 1.5`, `16px /1.5`, `16px/ 1.5`.
            if tok.ends_with('/') {
                if let Some((o, t)) = toks.get(i + 1) {
                    rest_start = o + t.len();
                }
            } else if !tok.contains('/') {
                match toks.get(i + 1) {
                    Some((_, "/")) => {
                        if let Some((o, t)) = toks.get(i + 2) {
                            rest_start = o + t.len();
                        }
                    }
                    Some((o, t)) if t.starts_with('/') => rest_start = o + t.len(),
                    _ => {}
                }
            }
            let families = families(value.get(rest_start..).unwrap_or(""));
            return Some(Shorthand {
                size: Some(normalise_size(size_part)),
                weight: weight_found,
                families,
            });
        }
        if let Some(w) = weight(tok) {
            weight_found = Some(w);
        }
    }
    None
}

/// Families (with weights) named in a font-service URL or an `@import` rule.
fn font_link_families(link: &str) -> Vec<(String, Vec<u16>)> {
    let url = extract_url(link);
    let lower = url.to_ascii_lowercase();
    if !FONT_HOSTS.iter().any(|h| lower.contains(h)) {
        return Vec::new();
    }
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.replace("&amp;", "&");
    let mut out = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "family" => {
                for spec in value.split('|') {
                    if let Some(f) = google_family(spec) {
                        out.push(f);
                    }
                }
            }
            // Fontshare: f[]=satoshi@400,700
            "f[]" => {
                let (name, ws) = value.split_once('@').unwrap_or((&value, ""));
                let name = name.trim();
                if !name.is_empty() {
                    out.push((title_case(name), ws.split(',').filter_map(weight).collect()));
                }
            }
            _ => {}
        }
    }
    out
}

fn title_case(slug: &str) -> String {
    slug.split(['-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Inter:wght@400;700`, `Playfair Display:ital,wght@0,400;1,700`, `Roboto:400,700italic`.
fn google_family(spec: &str) -> Option<(String, Vec<u16>)> {
    let (name, axes) = spec.split_once(':').unwrap_or((spec, ""));
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return None;
    }
    let mut ws = Vec::new();
    if let Some((names, tuples)) = axes.split_once('@') {
        let names: Vec<&str> = names.split(',').map(str::trim).collect();
        if let Some(k) = names.iter().position(|n| *n == "wght") {
            for tuple in tuples.split(';') {
                if let Some(v) = tuple.split(',').nth(k) {
                    ws.extend(v.split("..").filter_map(weight));
                }
            }
        }
    } else {
        for v in axes.split(',') {
            let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
            if let Some(w) = weight(&digits).or(match v {
                "regular" | "italic" => Some(400),
                "bold" | "bolditalic" => Some(700),
                _ => None,
            }) {
                ws.push(w);
            }
        }
    }
    Some((name, ws))
}

/// The URL in `url("...")`, `"..."` or a bare href.
fn extract_url(s: &str) -> String {
    let s = s.trim();
    let s = match s.to_ascii_lowercase().find("url(") {
        Some(i) => {
            let inner = &s[i + 4..];
            inner.split(')').next().unwrap_or(inner)
        }
        None => s,
    };
    let s = s.trim();
    let s = s
        .strip_prefix('"')
        .map(|s| s.split('"').next().unwrap_or(s))
        .or_else(|| {
            s.strip_prefix('\'')
                .map(|s| s.split('\'').next().unwrap_or(s))
        })
        .unwrap_or(s);
    s.split_whitespace().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(fonts: &'a [FontUse], family: &str) -> &'a FontUse {
        fonts
            .iter()
            .find(|f| f.family == family)
            .unwrap_or_else(|| panic!("{family} not in {fonts:#?}"))
    }

    #[test]
    fn css_rules_give_stacks_sizes_and_weights() {
        let css = r#"
            :root { --display: "Playfair Display", Georgia, serif; }
            body { font-family: 'Inter', -apple-system, sans-serif; font-size: 16px; }
            h1 { font-family: var(--display); font-size: 3rem; font-weight: 700 }
            h2 { font-size: clamp(1.5rem, 2vw, 2rem); font-weight: bold; }
            code, pre { font: 400 14px/1.4 "JetBrains Mono", monospace; }
            .lead { font: italic 600 1.25rem / 1.5 Inter, sans-serif }
        "#;
        let fonts = typography(css);
        let inter = find(&fonts, "Inter");
        assert_eq!(inter.uses, 2);
        assert_eq!(inter.fallbacks, ["-apple-system", "sans-serif"]);
        // h2 has no family: it inherits body's.
        assert_eq!(inter.sizes, ["16px", "1.25rem", "clamp(1.5rem, 2vw, 2rem)"]);
        assert_eq!(inter.weights, [600, 700]);
        let display = find(&fonts, "Playfair Display");
        assert_eq!(display.sizes, ["3rem"]);
        assert_eq!(display.weights, [700]);
        assert_eq!(display.fallbacks, ["Georgia", "serif"]);
        let mono = find(&fonts, "JetBrains Mono");
        assert_eq!(mono.sizes, ["14px"]);
        assert_eq!(mono.weights, [400]);
        assert_eq!(fonts[0].family, "Inter", "most used first");
        assert_eq!(typography(css), fonts, "deterministic");
    }

    #[test]
    fn html_style_blocks_inline_styles_font_faces_and_links() {
        let html = r#"<!doctype html><html><head>
            <link rel="preconnect" href="https://fonts.gstatic.com">
            <link href="https://fonts.googleapis.com/css2?family=Inter:wght@400;700&amp;family=Playfair+Display:ital,wght@0,400;1,900&display=swap" rel="stylesheet">
            <link href="https://fonts.googleapis.com/css?family=Roboto:300,700italic|Open+Sans" rel="stylesheet">
            <style>
              @import url('https://fonts.bunny.net/css?family=space-grotesk:500');
              @font-face { font-family: "Brand Grotesk"; src: url(brand.woff2); font-weight: 100 900; }
              .hero { font-family: "Brand Grotesk", sans-serif; font-size: 72px; }
            </style></head>
            <body><p style="font-family: Georgia, serif; font-size: 18px">hi</p></body></html>"#;
        let fonts = typography(html);
        assert_eq!(find(&fonts, "Inter").weights, [400, 700]);
        assert_eq!(find(&fonts, "Playfair Display").weights, [400, 900]);
        assert_eq!(find(&fonts, "Roboto").weights, [300, 700]);
        find(&fonts, "Open Sans");
        assert_eq!(find(&fonts, "space-grotesk").weights, [500]);
        let brand = find(&fonts, "Brand Grotesk");
        assert_eq!(brand.uses, 2);
        assert_eq!(brand.weights, [100, 900]);
        assert_eq!(brand.sizes, ["72px"]);
        assert_eq!(find(&fonts, "Georgia").sizes, ["18px"]);
    }

    #[test]
    fn generic_only_stacks_and_keywords() {
        let fonts = typography("p { font-family: monospace; } a { font-family: inherit; }");
        assert_eq!(fonts.len(), 1);
        assert_eq!(fonts[0].family, "monospace");
        assert!(typography("div { font: menu }").is_empty());
        assert!(typography("").is_empty());
        assert!(typography("<html><body>plain</body></html>").is_empty());
    }

    #[test]
    fn shorthand_parsing() {
        let sh = parse_font_shorthand("bold 12px/30px Georgia, serif").unwrap();
        assert_eq!(sh.size.as_deref(), Some("12px"));
        assert_eq!(sh.weight, Some(700));
        assert_eq!(sh.families, ["Georgia", "serif"]);
        let sh = parse_font_shorthand("small-caps 120% \"Fira Sans\"").unwrap();
        assert_eq!(sh.size.as_deref(), Some("120%"));
        assert_eq!(sh.families, ["Fira Sans"]);
        assert!(parse_font_shorthand("700").is_none());
    }
}
