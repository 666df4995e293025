//! What a web page says: title, description, visible text, images, links,
//! publication time and concepts; and decoding its bytes with the right charset.

use std::collections::HashSet;

use encoding_rs::Encoding;
use scraper::{ElementRef, Html, Node, Selector};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::extract::concepts::concepts;

/// An image on a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageImage {
    /// Its address, resolved against the page's.
    pub src: String,
    /// Its alt text (empty when none).
    pub alt: String,
}

/// What [`page`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageFeatures {
    /// `<title>`, else `og:title`, else the first `<h1>`.
    pub title: String,
    /// `<meta name="description">`, else `og:description`.
    pub description: String,
    /// Visible text (no scripts, styles or templates), whitespace collapsed.
    pub text: String,
    /// Images (`<img>` and `og:image`), in order, without duplicates.
    pub images: Vec<PageImage>,
    /// `http`/`https` links, resolved, without fragments or duplicates.
    pub links: Vec<String>,
    /// `article:published_time` or the first `<time datetime>`, when it parses.
    pub published_ms: Option<i64>,
    /// Concepts from the title, description, text, alt texts and file name.
    pub concepts: Vec<String>,
}

const MAX_TEXT: usize = 200_000;
const MAX_LINKS: usize = 1_000;
const MAX_IMAGES: usize = 500;
const MAX_DEPTH: usize = 512;

struct Selectors {
    title: Option<Selector>,
    h1: Option<Selector>,
    meta: Option<Selector>,
    img: Option<Selector>,
    a: Option<Selector>,
    base: Option<Selector>,
    time: Option<Selector>,
}

fn selectors() -> Selectors {
    Selectors {
        title: Selector::parse("title").ok(),
        h1: Selector::parse("h1").ok(),
        meta: Selector::parse("meta").ok(),
        img: Selector::parse("img").ok(),
        a: Selector::parse("a[href]").ok(),
        base: Selector::parse("base[href]").ok(),
        time: Selector::parse("time[datetime]").ok(),
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_text(doc: &Html, sel: &Option<Selector>) -> Option<String> {
    let sel = sel.as_ref()?;
    doc.select(sel)
        .map(|e| collapse(&e.text().collect::<String>()))
        .find(|t| !t.is_empty())
}

fn meta(doc: &Html, sel: &Option<Selector>, keys: &[&str]) -> Option<String> {
    let sel = sel.as_ref()?;
    for key in keys {
        for el in doc.select(sel) {
            let v = el.value();
            let name = v.attr("name").or_else(|| v.attr("property")).unwrap_or("");
            if name.eq_ignore_ascii_case(key)
                && let Some(c) = v.attr("content").map(collapse).filter(|c| !c.is_empty())
            {
                return Some(c);
            }
        }
    }
    None
}

fn resolve(base: Option<&Url>, href: &str) -> Option<String> {
    let href = href.trim();
    if href.is_empty() {
        return None;
    }
    let url = match base {
        Some(b) => b.join(href).ok()?,
        None => Url::parse(href).ok()?,
    };
    Some(url.to_string())
}

const INLINE: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd",
    "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var",
];

/// Visible text: text nodes outside `head`, `script`, `style`, `noscript`,
/// `template`, `svg` and `iframe`; block elements separate words.
fn visible_text(doc: &Html) -> String {
    let mut out = String::new();
    let mut stack = vec![(doc.tree.root(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if out.len() >= MAX_TEXT * 2 {
            break;
        }
        match node.value() {
            Node::Text(t) => {
                out.push_str(t);
                continue;
            }
            Node::Element(e) => {
                let name = e.name();
                if matches!(
                    name,
                    "script" | "style" | "noscript" | "template" | "svg" | "head" | "iframe"
                ) {
                    continue;
                }
                if !INLINE.contains(&name) {
                    out.push(' ');
                }
            }
            _ => {}
        }
        if depth < MAX_DEPTH {
            // Pushed in reverse so that they pop in document order.
            let children: Vec<_> = node.children().collect();
            stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
        }
    }
    let mut text = collapse(&out);
    if text.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(s).map(|t| t.timestamp_millis()))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
        })
}

/// Extracts what a page says. `html` is already decoded (see [`decode_html`]);
/// `base_url` (the page's address) resolves relative links and images, and a
/// `<base href>` in the page overrides it. Never fails: odd markup yields what
/// could be read.
pub fn page(html: &str, base_url: Option<&str>) -> PageFeatures {
    let doc = Html::parse_document(html);
    let s = selectors();
    let mut base = base_url.and_then(|b| Url::parse(b).ok());
    if let Some(href) = s
        .base
        .as_ref()
        .and_then(|sel| doc.select(sel).next())
        .and_then(|e| e.value().attr("href"))
    {
        let joined = match &base {
            Some(b) => b.join(href).ok(),
            None => Url::parse(href).ok(),
        };
        if joined.is_some() {
            base = joined;
        }
    }

    let title = first_text(&doc, &s.title)
        .or_else(|| meta(&doc, &s.meta, &["og:title", "twitter:title"]))
        .or_else(|| first_text(&doc, &s.h1))
        .unwrap_or_default();
    let description = meta(
        &doc,
        &s.meta,
        &["description", "og:description", "twitter:description"],
    )
    .unwrap_or_default();

    let mut images = Vec::new();
    let mut seen = HashSet::new();
    let mut push_image = |src: Option<String>, alt: &str, images: &mut Vec<PageImage>| {
        if let Some(src) = src.filter(|s| !s.starts_with("data:"))
            && images.len() < MAX_IMAGES
            && seen.insert(src.clone())
        {
            images.push(PageImage {
                src,
                alt: collapse(alt),
            });
        }
    };
    if let Some(sel) = &s.img {
        for el in doc.select(sel) {
            let v = el.value();
            let src = v.attr("src").or_else(|| v.attr("data-src")).or_else(|| {
                v.attr("srcset")
                    .and_then(|set| set.split(',').next())
                    .and_then(|c| c.split_whitespace().next())
            });
            push_image(
                src.and_then(|h| resolve(base.as_ref(), h)),
                v.attr("alt").unwrap_or(""),
                &mut images,
            );
        }
    }
    if let Some(og) = meta(&doc, &s.meta, &["og:image", "twitter:image"]) {
        let alt = meta(&doc, &s.meta, &["og:image:alt", "twitter:image:alt"]).unwrap_or_default();
        push_image(resolve(base.as_ref(), &og), &alt, &mut images);
    }

    let mut links = Vec::new();
    let mut seen_links = HashSet::new();
    if let Some(sel) = &s.a {
        for el in doc.select(sel) {
            let Some(href) = el.value().attr("href") else {
                continue;
            };
            let Some(mut url) = resolve(base.as_ref(), href).and_then(|u| Url::parse(&u).ok())
            else {
                continue;
            };
            if !matches!(url.scheme(), "http" | "https") {
                continue;
            }
            url.set_fragment(None);
            let u = url.to_string();
            if links.len() < MAX_LINKS && seen_links.insert(u.clone()) {
                links.push(u);
            }
        }
    }

    let published_ms = meta(
        &doc,
        &s.meta,
        &[
            "article:published_time",
            "og:published_time",
            "date",
            "dc.date",
        ],
    )
    .and_then(|t| parse_time(&t))
    .or_else(|| {
        let sel = s.time.as_ref()?;
        doc.select(sel)
            .filter_map(|e: ElementRef<'_>| e.value().attr("datetime"))
            .find_map(parse_time)
    });

    let text = visible_text(&doc);
    let alts: Vec<&str> = images.iter().map(|i| i.alt.as_str()).collect();
    let file_name = base
        .as_ref()
        .and_then(|u| {
            u.path_segments()?
                .rev()
                .find(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let concepts = concepts(
        &format!("{title}\n{description}\n{text}"),
        &alts,
        &file_name,
    );

    PageFeatures {
        title,
        description,
        text,
        images,
        links,
        published_ms,
        concepts,
    }
}

/// The charset named in a `Content-Type` value (`text/html; charset=...`).
fn header_charset(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        Encoding::for_label(v.trim().trim_matches(['"', '\'']).as_bytes())
    })
}

/// The charset a `<meta charset>` or `<meta http-equiv="Content-Type">` names
/// in the first 1,024 bytes (the HTML prescan, simplified).
fn meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(1024)];
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let mut from = 0;
    while let Some(i) = find(&lower[from..], b"<meta") {
        let start = from + i;
        let end = find(&lower[start..], b">").map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        if let Some(c) = find(tag, b"charset") {
            let mut v = &tag[c + 7..];
            while let [b' ' | b'\t' | b'\n' | b'\r', rest @ ..] = v {
                v = rest;
            }
            if let [b'=', rest @ ..] = v {
                let rest = rest
                    .iter()
                    .skip_while(|b| matches!(b, b' ' | b'"' | b'\''))
                    .take_while(|b| !matches!(b, b' ' | b'"' | b'\'' | b';' | b'/' | b'>'))
                    .copied()
                    .collect::<Vec<u8>>();
                if let Some(enc) = Encoding::for_label(&rest) {
                    // UTF-16 in a meta tag means UTF-8 (HTML spec).
                    if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
                        return Some(encoding_rs::UTF_8);
                    }
                    return Some(enc);
                }
            }
        }
        from = end;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a page's bytes: a byte-order mark wins, then the charset of the
/// `Content-Type` header, then a `<meta charset>` in the first 1,024 bytes, then
/// UTF-8 (invalid sequences become U+FFFD).
pub fn decode_html(bytes: &[u8], content_type: Option<&str>) -> String {
    let encoding = Encoding::for_bom(bytes)
        .map(|(e, _)| e)
        .or_else(|| content_type.and_then(header_charset))
        .or_else(|| meta_charset(bytes))
        .unwrap_or(encoding_rs::UTF_8);
    let (text, _, _) = encoding.decode(bytes);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!doctype html>
<html><head>
  <meta charset="utf-8">
  <title>  Studio   Nord — Brutalist portfolio </title>
  <meta name="description" content="A neo-brutalist portfolio with a bento grid.">
  <meta property="og:image" content="/og.png">
  <meta property="article:published_time" content="2026-03-01T10:00:00Z">
  <style>body { color: red }</style>
  <script>var hidden = "do not index";</script>
</head>
<body>
  <h1>Work</h1><p>Grainy <b>gradients</b> and<br>risograph prints.</p>
  <img src="img/hero.jpg" alt="Duotone hero photo">
  <img src="img/hero.jpg" alt="duplicate">
  <img data-src="https://cdn.example.com/lazy.webp">
  <img src="data:image/png;base64,AAAA" alt="inline">
  <a href="/about#team">About</a> <a href="https://other.example.org/x">X</a>
  <a href="mailto:hi@example.com">mail</a> <a href="/about">again</a>
  <noscript>enable js</noscript>
</body></html>"#;

    #[test]
    fn extracts_title_description_text_images_links_time_and_concepts() {
        let p = page(PAGE, Some("https://studio.example.com/work/index.html"));
        assert_eq!(p.title, "Studio Nord — Brutalist portfolio");
        assert_eq!(
            p.description,
            "A neo-brutalist portfolio with a bento grid."
        );
        assert_eq!(
            p.text,
            "Work Grainy gradients and risograph prints. About X mail again"
        );
        assert!(!p.text.contains("hidden") && !p.text.contains("enable js"));
        assert_eq!(
            p.images,
            [
                PageImage {
                    src: "https://studio.example.com/work/img/hero.jpg".into(),
                    alt: "Duotone hero photo".into()
                },
                PageImage {
                    src: "https://cdn.example.com/lazy.webp".into(),
                    alt: String::new()
                },
                PageImage {
                    src: "https://studio.example.com/og.png".into(),
                    alt: String::new()
                },
            ]
        );
        assert_eq!(
            p.links,
            [
                "https://studio.example.com/about",
                "https://other.example.org/x"
            ]
        );
        assert_eq!(p.published_ms, Some(1_772_359_200_000));
        for c in [
            "bento grid",
            "brutalism",
            "duotone",
            "gradient",
            "grain",
            "photography",
            "risograph",
        ] {
            assert!(
                p.concepts.iter().any(|x| x == c),
                "{c} not in {:?}",
                p.concepts
            );
        }
    }

    #[test]
    fn base_href_and_missing_parts() {
        let p = page(
            r#"<html><head><base href="https://cdn.example.net/x/"></head><body><h1>Only heading</h1><a href="y">y</a></body></html>"#,
            None,
        );
        assert_eq!(p.title, "Only heading");
        assert_eq!(p.links, ["https://cdn.example.net/x/y"]);
        let empty = page("", None);
        assert_eq!(empty, PageFeatures::default());
        // Relative links without any base cannot be resolved and are dropped.
        assert!(page("<a href='/x'>x</a>", None).links.is_empty());
    }

    #[test]
    fn broken_markup_and_deep_nesting_do_not_panic() {
        let deep = "<div>".repeat(5_000) + "deep text";
        let p = page(&deep, Some("not a url"));
        assert!(p.text.is_empty() || p.text.contains("deep"));
        page("<html><body><p>unclosed <b>tags <i>everywhere", None);
        page("\u{0}\u{fffd}<<<>>>", None);
    }

    #[test]
    fn decodes_with_header_meta_bom_or_utf8() {
        // "café" in windows-1252.
        let latin = b"<html><body>caf\xe9</body></html>";
        assert!(decode_html(latin, Some("text/html; charset=ISO-8859-1")).contains("café"));
        assert!(decode_html(latin, Some("text/html; charset=\"windows-1252\"")).contains("café"));
        let with_meta =
            b"<html><head><meta charset='windows-1252'></head><body>caf\xe9</body></html>";
        assert!(decode_html(with_meta, Some("text/html")).contains("café"));
        let http_equiv =
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\">caf\xe9";
        assert!(decode_html(http_equiv, None).contains("café"));
        // Shift_JIS: "日本" = 93 fa 96 7b.
        let sjis = b"<meta charset=\"shift_jis\"><p>\x93\xfa\x96\x7b</p>";
        assert!(decode_html(sjis, None).contains("日本"));
        // A BOM beats the header.
        let bom = b"\xef\xbb\xbfcaf\xc3\xa9";
        assert_eq!(
            decode_html(bom, Some("text/html; charset=iso-8859-1")),
            "café"
        );
        // No charset: UTF-8, invalid bytes replaced.
        assert_eq!(decode_html(b"caf\xc3\xa9 \xff", None), "café \u{fffd}");
        // Unknown labels fall through.
        assert!(decode_html(b"ok", Some("text/html; charset=klingon")).contains("ok"));
    }
}
