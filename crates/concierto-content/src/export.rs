//! Collection exports: a self-contained HTML mood board and JSON.

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::json;

use crate::colour::parse_hex;
use crate::model::{Blob, Collection, Item};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Media types shown inline as images (others are listed, not embedded).
const EMBEDDED: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "image/svg+xml",
];

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;padding:32px;font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f2ee;color:#1d1d1f}
header{max-width:1200px;margin:0 auto 24px}
h1{font-size:32px;margin:0 0 4px}
.meta{color:#6b6b70;font-size:13px}
.board{max-width:1200px;margin:0 auto;columns:3 320px;column-gap:20px}
.card{break-inside:avoid;margin:0 0 20px;background:#fff;border-radius:10px;overflow:hidden;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.card img{display:block;width:100%;height:auto}
.card .body{padding:12px 14px 14px}
.card h2{font-size:16px;margin:0 0 6px}
.palette{display:flex;height:28px;border-radius:6px;overflow:hidden;margin:8px 0}
.palette span{display:block;height:100%}
.hexes{display:flex;flex-wrap:wrap;gap:4px 10px;font:12px ui-monospace,monospace;color:#444;margin:0;padding:0;list-style:none}
.hexes i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.tags{display:flex;flex-wrap:wrap;gap:6px;margin:8px 0 0;padding:0;list-style:none}
.tags li{background:#eeeae3;border-radius:99px;padding:1px 9px;font-size:12px}
.notes{margin:8px 0 0;font-size:13px;color:#333;white-space:pre-wrap}
.excerpt{margin:6px 0 0;font-size:13px;color:#444}
.source{margin:8px 0 0;font-size:12px;color:#6b6b70;word-break:break-all}
";

/// The mood-board page of a collection.
pub(crate) fn moodboard_html(
    collection: &Collection,
    entries: &[(Item, Option<Blob>)],
    exported_ms: i64,
) -> String {
    let mut h = String::with_capacity(
        4096 + entries
            .iter()
            .map(|(_, b)| b.as_ref().map_or(512, |b| b.bytes.len() * 4 / 3 + 1024))
            .sum::<usize>(),
    );
    let name = escape_html(&collection.name);
    // Writing to a String cannot fail.
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"Concierto\">\n\
         <title>{name} · mood board</title>\n<style>{STYLE}</style></head>\n<body>\n<header><h1>{name}</h1>"
    );
    if !collection.description.is_empty() {
        let _ = write!(h, "<p>{}</p>", escape_html(&collection.description));
    }
    let _ = write!(
        h,
        "<p class=\"meta\">{} item{} · exported {}</p></header>\n<main class=\"board\">\n",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" },
        date(exported_ms)
    );
    for (item, blob) in entries {
        let title = escape_html(&item.title);
        let _ = write!(
            h,
            "<figure class=\"card\" id=\"item-{}\">",
            escape_html(&item.id)
        );
        if let Some(b) = blob
            .as_ref()
            .filter(|b| EMBEDDED.contains(&b.media_type.as_str()))
        {
            let data = base64::engine::general_purpose::STANDARD.encode(&b.bytes);
            let _ = write!(
                h,
                "<img src=\"data:{};base64,{data}\" alt=\"{title}\" loading=\"lazy\">",
                b.media_type
            );
        }
        let _ = write!(h, "<figcaption class=\"body\"><h2>{title}</h2>");
        // Only well-formed hex colours reach a style attribute.
        let swatches: Vec<(String, f32)> = item
            .palette
            .iter()
            .filter_map(|s| {
                parse_hex(&s.hex)
                    .ok()
                    .map(|rgb| (crate::colour::to_hex(rgb), s.share))
            })
            .collect();
        if !swatches.is_empty() {
            h.push_str("<div class=\"palette\">");
            for (hex, share) in &swatches {
                let _ = write!(
                    h,
                    "<span style=\"background:{hex};flex:{:.4}\" title=\"{hex} {:.0}%\"></span>",
                    share.max(0.001),
                    share * 100.0
                );
            }
            h.push_str("</div><ul class=\"hexes\">");
            for (hex, share) in &swatches {
                let _ = write!(
                    h,
                    "<li><i style=\"background:{hex}\"></i>{hex} {:.0}%</li>",
                    share * 100.0
                );
            }
            h.push_str("</ul>");
        }
        if blob.is_none() && !item.text.is_empty() {
            let excerpt: String = item.text.chars().take(280).collect();
            let more = if item.text.chars().count() > 280 {
                "…"
            } else {
                ""
            };
            let _ = write!(
                h,
                "<p class=\"excerpt\">{}{more}</p>",
                escape_html(&excerpt)
            );
        }
        if !item.tags.is_empty() {
            h.push_str("<ul class=\"tags\">");
            for t in &item.tags {
                let _ = write!(h, "<li>{}</li>", escape_html(t));
            }
            h.push_str("</ul>");
        }
        if !item.notes.trim().is_empty() {
            let _ = write!(
                h,
                "<p class=\"notes\">{}</p>",
                escape_html(item.notes.trim())
            );
        }
        let _ = write!(h, "<p class=\"source\">{}", escape_html(&item.source));
        if let Some(url) = &item.url {
            let _ = write!(h, " · {}", escape_html(url));
        }
        h.push_str("</p></figcaption></figure>\n");
    }
    h.push_str("</main>\n</body></html>\n");
    h
}

/// The JSON export of a collection.
pub(crate) fn json(collection: &Collection, items: &[Item], exported_ms: i64) -> serde_json::Value {
    json!({
        "collection": {
            "name": collection.name,
            "description": collection.description,
            "created_ms": collection.created_ms,
            "updated_ms": collection.updated_ms,
        },
        "exported_ms": exported_ms,
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }
}
