//! Step inputs and outputs as sanitised Markdown: pulldown-cmark makes HTML
//! of at most [`MAX_SOURCE_BYTES`] of the text, then ammonia keeps only an
//! allow-list of tags and attributes.
//!
//! ```text
//!  text ─▶ cut to MAX_SOURCE_BYTES ─▶ pulldown-cmark events ─▶ tame ─▶ HTML ─▶ ammonia ─▶ page
//!                                      raw HTML → shown as code
//!                                      deeper than MAX_DEPTH → flattened
//!                                      images not under /library/api/ → their alt text
//!                                      task markers → [x] / [ ]
//! ```
//!
//! What comes out: paragraphs, headings, emphasis, lists, quotes, tables,
//! code (inline and blocks), rules, links (`http`, `https`, `mailto` and
//! relative; `rel="noopener noreferrer nofollow"`) and images served by the
//! content library (`/library/api/...`, the dashboard's own origin, so the
//! CSP's `img-src 'self'` holds). No script, no event handler, no inline
//! style, no class or id, no remote image, no `javascript:` or `data:` URL.
//! The cost is bounded: the text is cut (the page says by how much), the
//! parser and the sanitiser do not recurse on the input's nesting, and the
//! HTML handed to the sanitiser nests at most [`MAX_DEPTH`] deep.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

use crate::html::esc;

/// Most bytes of one text rendered; the rest is left out, and said so.
pub(crate) const MAX_SOURCE_BYTES: usize = 128 * 1024;
/// Deepest nesting of elements kept; deeper ones are flattened into their
/// parent (their text stays).
pub(crate) const MAX_DEPTH: usize = 16;

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let tags: HashSet<&'static str> = [
        "p",
        "br",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "ul",
        "ol",
        "li",
        "pre",
        "code",
        "em",
        "strong",
        "del",
        "a",
        "img",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    ]
    .into();
    let attrs: HashMap<&'static str, HashSet<&'static str>> = [
        ("a", ["href", "title"].into()),
        ("img", ["src", "alt", "title"].into()),
        ("ol", ["start"].into()),
    ]
    .into();
    let mut b = ammonia::Builder::empty();
    b.tags(tags)
        .tag_attributes(attrs)
        .generic_attributes(HashSet::new())
        .url_schemes(["http", "https", "mailto"].into())
        .url_relative(ammonia::UrlRelative::PassThrough)
        .link_rel(Some("noopener noreferrer nofollow"))
        .strip_comments(true)
        .attribute_filter(|element, attribute, value| {
            if element == "img" && attribute == "src" && !library_path(value) {
                return None;
            }
            Some(Cow::Borrowed(value))
        });
    b
});

/// A same-origin path of the content library's API: `/library/api/...`,
/// with no way out of it (`..`, `//`, backslashes, encoded slashes or dots).
pub(crate) fn library_path(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("/library/api/") else {
        return false;
    };
    let lower = rest.to_ascii_lowercase();
    !rest.is_empty()
        && !rest.contains("//")
        && !rest.contains('\\')
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !lower.contains("%2e")
        && rest.split(['/', '?', '#']).all(|s| s != ".." && s != ".")
        && rest.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

/// One rendered text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    /// Sanitised HTML.
    pub html: String,
    /// Bytes of the text left out (0 when it was rendered whole).
    pub left_out: usize,
}

/// `text` as sanitised HTML (see the module docs); at most
/// [`MAX_SOURCE_BYTES`] of it.
pub(crate) fn render(text: &str) -> Rendered {
    let cut = floor_char_boundary(text, MAX_SOURCE_BYTES);
    let source = &text[..cut];
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    let events = Tamed::new(Parser::new_ext(source, opts));
    let mut raw = String::with_capacity(source.len() + source.len() / 2);
    pulldown_cmark::html::push_html(&mut raw, events);
    Rendered {
        html: CLEANER.clean(&raw).to_string(),
        left_out: text.len() - cut,
    }
}

/// `text` rendered in a block for a page: `<div class="md">`, and a line
/// saying how much was left out when it was cut.
pub(crate) fn block(text: &str, attrs: &str) -> String {
    let r = render(text);
    let cut = if r.left_out > 0 {
        format!(
            "<p class=\"muted cut\">Showing the first {} of {} (the rest is left out here).</p>",
            bytes(text.len() - r.left_out),
            bytes(text.len())
        )
    } else {
        String::new()
    };
    format!("<div class=\"md\"{attrs}>{}</div>{cut}", r.html)
}

/// `12 KB`, `1.0 MB`, `800 B`.
fn bytes(n: usize) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    } else if n >= 1024 {
        format!("{} KB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// The largest char boundary of `s` at or before `max`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The parser's events made safe to turn into HTML: raw HTML shown as code,
/// nesting past [`MAX_DEPTH`] flattened, images outside the library reduced
/// to their alt text, task markers as text.
struct Tamed<'a, I> {
    inner: I,
    /// For each open element: whether its start was kept (so its end is).
    open: Vec<bool>,
    /// Kept elements open now.
    depth: usize,
    _text: std::marker::PhantomData<&'a ()>,
}

impl<'a, I: Iterator<Item = Event<'a>>> Tamed<'a, I> {
    fn new(inner: I) -> Self {
        Tamed {
            inner,
            open: Vec::new(),
            depth: 0,
            _text: std::marker::PhantomData,
        }
    }

    /// The start of `tag`, changed or dropped (`None`).
    fn start(&mut self, tag: Tag<'a>) -> Option<Event<'a>> {
        let tag = match tag {
            // Raw HTML is shown as what it is: code.
            Tag::HtmlBlock => Tag::CodeBlock(CodeBlockKind::Indented),
            Tag::Image { ref dest_url, .. } if !library_path(dest_url) => {
                self.open.push(false);
                return None;
            }
            t => t,
        };
        if self.depth >= MAX_DEPTH {
            self.open.push(false);
            return None;
        }
        self.open.push(true);
        self.depth += 1;
        Some(Event::Start(tag))
    }

    fn end(&mut self, tag: TagEnd) -> Option<Event<'a>> {
        if !self.open.pop().unwrap_or(false) {
            return None;
        }
        self.depth = self.depth.saturating_sub(1);
        Some(Event::End(match tag {
            TagEnd::HtmlBlock => TagEnd::CodeBlock,
            t => t,
        }))
    }
}

impl<'a, I: Iterator<Item = Event<'a>>> Iterator for Tamed<'a, I> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        loop {
            let e = self.inner.next()?;
            let out = match e {
                Event::Start(tag) => self.start(tag),
                Event::End(tag) => self.end(tag),
                // Inside a raw HTML block (now a code block): its text.
                Event::Html(s) => Some(Event::Text(s)),
                Event::InlineHtml(s) => Some(Event::Code(s)),
                Event::InlineMath(s) | Event::DisplayMath(s) => Some(Event::Code(s)),
                Event::FootnoteReference(s) => Some(Event::Text(CowStr::from(format!("[^{s}]")))),
                Event::TaskListMarker(done) => Some(Event::Text(CowStr::Borrowed(if done {
                    "[x] "
                } else {
                    "[ ] "
                }))),
                other => Some(other),
            };
            if let Some(e) = out {
                return Some(e);
            }
        }
    }
}

/// Escaped plain text in a `<pre>`, for text that is not Markdown (JSON
/// arguments), cut like [`render`].
pub(crate) fn plain(text: &str, max: usize) -> String {
    let cut = floor_char_boundary(text, max);
    let more = if cut < text.len() { "…" } else { "" };
    format!("{}{more}", esc(&text[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(md: &str) -> String {
        render(md).html
    }

    /// The deepest element nesting of `html` (void elements do not nest).
    fn depth(html: &str) -> usize {
        let (mut d, mut max) = (0usize, 0usize);
        let mut rest = html;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let name: String = rest
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if ["br", "hr", "img"].contains(&name.as_str()) {
                continue;
            }
            if rest.starts_with('/') {
                d = d.saturating_sub(1);
            } else {
                d += 1;
                max = max.max(d);
            }
        }
        max
    }

    #[test]
    fn markdown_becomes_html_with_code_blocks_kept() {
        let out = html(
            "# Launch\n\nSome *soft* and **bold** text, `inline`.\n\n\
```rust\nfn main() { println!(\"<hi>\"); }\n```\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        );
        assert!(out.contains("<h1>Launch</h1>"), "{out}");
        assert!(out.contains("<em>soft</em>"), "{out}");
        assert!(out.contains("<strong>bold</strong>"), "{out}");
        assert!(out.contains("<code>inline</code>"), "{out}");
        assert!(
            out.contains("<pre><code>fn main() { println!(\"&lt;hi&gt;\"); }"),
            "{out}"
        );
        assert!(out.contains("<li>one</li>"), "{out}");
        assert!(out.contains("<td>1</td>"), "{out}");
        assert!(!out.contains("class="), "no class passes: {out}");
    }

    #[test]
    fn scripts_handlers_javascript_links_styles_and_remote_images_are_dropped() {
        let out = html(
            "<script>alert(1)</script>\n\nHi <img src=x onerror=alert(2)> there \
<span style=\"color:red\">red</span>\n\n[click](javascript:alert(3)) \
[data](data:text/html;base64,PHNjcmlwdD4=) [ok](https://example.com/a)\n\n\
![remote](https://evil.example/x.png) ![proto](//evil.example/y.png) \
![up](/library/api/../../logout) ![lib](/library/api/items/abc/blob)\n",
        );
        // Every `<` left starts an element (text has `&lt;`): look at those.
        let tags: Vec<&str> = out
            .split('<')
            .skip(1)
            .filter_map(|t| t.split('>').next())
            .collect();
        for t in &tags {
            let name = t
                .trim_start_matches('/')
                .split([' ', '/'])
                .next()
                .unwrap_or("");
            assert!(
                ["pre", "code", "p", "a", "img"].contains(&name),
                "<{t}> in {out}"
            );
            for a in t.split(' ').skip(1) {
                assert!(
                    ["href=", "rel=", "src=", "alt=", "noreferrer", "nofollow"]
                        .iter()
                        .any(|ok| a.starts_with(ok)),
                    "{a} in <{t}>"
                );
            }
        }
        assert!(!out.contains("javascript:"), "{out}");
        assert!(!out.contains("data:text"), "{out}");
        assert!(!out.contains("evil.example"), "{out}");
        assert!(!out.contains("logout"), "{out}");
        // Raw HTML is shown as text, never as markup.
        assert!(
            out.contains("<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        assert!(out.contains("&lt;img src=x onerror=alert(2)&gt;"), "{out}");
        assert!(!out.contains("<img src=\"x\""), "{out}");
        // The alt text of a refused image stays.
        assert!(out.contains("remote"), "{out}");
        assert!(
            out.contains(
                "href=\"https://example.com/a\" rel=\"noopener noreferrer nofollow\">ok</a>"
            ),
            "{out}"
        );
        assert!(
            out.contains("<img src=\"/library/api/items/abc/blob\" alt=\"lib\">"),
            "{out}"
        );
        assert_eq!(out.matches("<img").count(), 1, "{out}");
    }

    #[test]
    fn library_paths_have_no_way_out() {
        assert!(library_path("/library/api/items/abc/blob"));
        assert!(library_path("/library/api/items/abc/blob?w=300"));
        for bad in [
            "/library/api/",
            "/library/api/../x",
            "/library/api/items/./x",
            "/library/api/items//x",
            "/library/api/items/%2e%2e/x",
            "/library/api/a%2Fb",
            "/library/api/a\\b",
            "/library/api/a b",
            "https://evil.example/library/api/x",
            "//evil.example/library/api/x",
            "/libraryx/api/x",
        ] {
            assert!(!library_path(bad), "{bad}");
        }
    }

    #[test]
    fn nesting_bombs_are_flattened_and_cost_little() {
        let start = std::time::Instant::now();
        for bomb in [
            ">".repeat(10_000) + " deep",
            "- ".repeat(10_000) + "deep",
            "1. ".repeat(10_000) + "deep",
            "*".repeat(10_000) + "deep" + &"*".repeat(10_000),
            "[".repeat(10_000) + "deep" + &"](x)".repeat(10_000),
            "> - ".repeat(5_000) + "deep",
        ] {
            let out = html(&bomb);
            assert!(depth(&out) <= MAX_DEPTH, "depth {}", depth(&out));
            assert!(out.contains("deep"), "the text stays");
        }
        // Generous: a few milliseconds each in practice.
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn a_megabyte_is_cut_and_says_so() {
        let big = "word ".repeat(1024 * 1024 / 5 + 1);
        let r = render(&big);
        assert!(
            r.left_out >= 1024 * 1024 - MAX_SOURCE_BYTES,
            "{}",
            r.left_out
        );
        assert!(r.html.len() < 2 * MAX_SOURCE_BYTES);
        let b = block(&big, "");
        assert!(
            b.contains("Showing the first 128 KB of 1.0 MB"),
            "{}",
            &b[b.len() - 200..]
        );
        // A cut never splits a character.
        let r = render(&"é".repeat(MAX_SOURCE_BYTES));
        assert!(r.left_out > 0);
        assert!(
            r.html.ends_with("é</p>\n") || r.html.ends_with("é</p>"),
            "{}",
            &r.html[r.html.len() - 20..]
        );
    }
}
