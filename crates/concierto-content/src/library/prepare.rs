//! The write path's first half, outside the writer's lock: the extractors
//! run over a new item and its content hash is computed.

use sha2::{Digest, Sha256};

use super::{MAX_NAME, MAX_PLAIN_TEXT, MAX_SOURCE_KEY, PALETTE_SIZE, check_name, normalise_tags};
use crate::error::ContentError;
use crate::extract;
use crate::model::{Item, Kind, NewItem};

/// An item ready to stage: features extracted, id computed.
pub(super) struct Prepared {
    pub(super) item: Item,
    pub(super) blob: Option<Vec<u8>>,
}

fn file_name(source_key: &str) -> &str {
    let path = source_key.split(['?', '#']).next().unwrap_or(source_key);
    path.trim_end_matches('/')
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(path)
}

fn essence(media_type: Option<&str>) -> String {
    media_type
        .and_then(|m| m.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let head: Vec<u8> = bytes.iter().take(512).map(u8::to_ascii_lowercase).collect();
    let head = String::from_utf8_lossy(&head);
    let t = head.trim_start_matches('\u{feff}').trim_start();
    t.starts_with("<!doctype html") || t.starts_with("<html") || head.contains("<head")
}

/// An SVG document: `<svg` near the start (after an XML declaration,
/// comments or a doctype).
fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let t = head.trim_start_matches('\u{feff}').trim_start();
    (t.starts_with('<') && head.contains("<svg")) && !head.contains("<html")
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Runs the extractors and computes the content hash.
///
/// The id hashes the bytes of images and other files, the extracted title,
/// text and images of HTML pages (so that markup-only churn such as a new
/// CSRF token is not a change), and kind, address, title and text when no
/// bytes are given.
pub(super) fn prepare(new: NewItem, now: i64) -> Result<Prepared, ContentError> {
    check_name("source", &new.source, MAX_NAME)?;
    check_name("source key", &new.source_key, MAX_SOURCE_KEY)?;
    let tags = normalise_tags(&new.tags)?;
    let given_title = new.title.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut item = Item {
        id: String::new(),
        kind: new.kind,
        source: new.source,
        source_key: new.source_key,
        url: new.url.filter(|u| !u.trim().is_empty()),
        title: given_title,
        text: new.text,
        media_type: None,
        size: 0,
        tags,
        notes: new.notes,
        collections: Vec::new(),
        palette: if new.extractors.palettes {
            new.palette
        } else {
            Vec::new()
        },
        typography: Vec::new(),
        concepts: Vec::new(),
        published_ms: new.published_ms,
        ingested_ms: now,
        updated_ms: now,
        replaces: None,
        superseded_by: None,
        removed_ms: None,
    };
    let mut alts: Vec<String> = Vec::new();
    let mut concepts: Vec<String> = new
        .concepts
        .iter()
        .map(|c| {
            c.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        })
        .filter(|c| !c.is_empty())
        .collect();
    let essence = essence(new.media_type.as_deref());
    let ex = new.extractors;
    let mut blob = None;
    let id;
    match new.bytes {
        Some(bytes) => {
            item.size = bytes.len() as u64;
            if let Some(mt) = extract::sniff_image_type(&bytes) {
                if ex.palettes {
                    item.palette = extract::palette(&bytes, PALETTE_SIZE)?;
                } else {
                    item.palette.clear();
                }
                item.media_type = Some(mt.to_string());
                id = sha256_hex(&[b"bytes", &bytes]);
                blob = Some(bytes);
            } else if (essence == "image/svg+xml" || item.kind == Kind::Image)
                && looks_like_svg(&bytes)
            {
                item.media_type = Some("image/svg+xml".into());
                id = sha256_hex(&[b"bytes", &bytes]);
                blob = Some(bytes);
            } else if item.kind == Kind::Image || essence.starts_with("image/") {
                return Err(ContentError::Image(format!(
                    "{}: not a PNG, JPEG, WebP, GIF or SVG image (checked by content, not name)",
                    item.source_key
                )));
            } else if essence == "text/html"
                || essence == "application/xhtml+xml"
                || (essence.is_empty() && looks_like_html(&bytes))
            {
                let html = extract::decode_html(&bytes, new.media_type.as_deref());
                let base = item.url.clone().or_else(|| {
                    (item.source_key.starts_with("http://")
                        || item.source_key.starts_with("https://"))
                    .then(|| item.source_key.clone())
                });
                let page = extract::page(&html, base.as_deref());
                if ex.typography {
                    item.typography = extract::typography(&html);
                }
                if item.title.is_empty() {
                    item.title = page.title.clone();
                }
                if item.text.trim().is_empty() {
                    item.text = if page.description.is_empty() {
                        page.text.clone()
                    } else {
                        format!("{}\n\n{}", page.description, page.text)
                    };
                }
                if item.published_ms.is_none() {
                    item.published_ms = page.published_ms;
                }
                item.media_type = Some("text/html".into());
                concepts.extend(page.concepts);
                alts.extend(page.images.iter().map(|i| i.alt.clone()));
                let srcs: Vec<&str> = page.images.iter().map(|i| i.src.as_str()).collect();
                id = sha256_hex(&[
                    b"html",
                    page.title.as_bytes(),
                    page.description.as_bytes(),
                    page.text.as_bytes(),
                    srcs.join("\n").as_bytes(),
                ]);
            } else if essence == "text/css" {
                let css = String::from_utf8_lossy(&bytes);
                if ex.typography {
                    item.typography = extract::typography(&css);
                }
                item.media_type = Some(essence.clone());
                id = sha256_hex(&[b"bytes", &bytes]);
            } else {
                if item.text.trim().is_empty() {
                    let end = bytes.len().min(MAX_PLAIN_TEXT);
                    item.text = String::from_utf8_lossy(&bytes[..end]).into_owned();
                }
                item.media_type = (!essence.is_empty()).then(|| essence.clone());
                id = sha256_hex(&[b"bytes", &bytes]);
            }
        }
        None => {
            item.size = item.text.len() as u64;
            item.media_type = (!essence.is_empty()).then(|| essence.clone());
            id = sha256_hex(&[
                b"fields",
                item.kind.as_str().as_bytes(),
                item.url.as_deref().unwrap_or("").as_bytes(),
                item.title.as_bytes(),
                item.text.as_bytes(),
            ]);
        }
    }
    if item.title.is_empty() {
        item.title = file_name(&item.source_key).to_string();
    }
    let alt_refs: Vec<&str> = alts.iter().map(String::as_str).collect();
    concepts.extend(extract::concepts(
        &format!("{}\n{}", item.title, item.text),
        &alt_refs,
        file_name(&item.source_key),
    ));
    concepts.sort();
    concepts.dedup();
    item.concepts = ex.filter_concepts(concepts);
    if ex.insights {
        let found = extract::insights(&format!("{}\n{}", item.title, item.text));
        if !found.is_empty() {
            let lines: Vec<String> = found.iter().map(|s| format!("- {s}")).collect();
            let block = format!("Industry insights:\n{}", lines.join("\n"));
            item.notes = if item.notes.trim().is_empty() {
                block
            } else {
                format!("{}\n\n{block}", item.notes)
            };
        }
    }
    item.id = id;
    Ok(Prepared { item, blob })
}

/// Runs [`prepare`] over a batch, on up to two threads.
pub(super) fn prepare_all(items: Vec<NewItem>, now: i64) -> Vec<Result<Prepared, ContentError>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if items.len() < 16 || threads < 2 {
        return items.into_iter().map(|n| prepare(n, now)).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<NewItem>> = Vec::new();
    let mut it = items.into_iter();
    loop {
        let c: Vec<NewItem> = it.by_ref().take(chunk).collect();
        if c.is_empty() {
            break;
        }
        chunks.push(c);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(|n| prepare(n, now)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(ContentError::Invalid(
                        "an extractor panicked on this batch".into(),
                    ))]
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_paths_and_urls() {
        assert_eq!(file_name("boards/2026/hero.png"), "hero.png");
        assert_eq!(file_name("https://x.example/a/b.html?q=1#f"), "b.html");
        assert_eq!(file_name("https://x.example/a/"), "a");
        assert_eq!(file_name("C:\\art\\riso.jpg"), "riso.jpg");
    }
}
