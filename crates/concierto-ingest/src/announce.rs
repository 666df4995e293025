//! What is announced on `content.ingested.<source>`: a stored [`Item`] as a
//! `concierto.v1.ContentItem`.

use concierto_content::Item;
use concierto_proto::v1::{ContentItem, PaletteColor};

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Text announced at most (the full text stays in the library).
const MAX_TEXT: usize = 4096;

fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The announcement of `item`: its id as `sha256:<hex>` (the library's id is
/// the bare hex), kind, title, address, the start of its text, tags, palette,
/// font families, and `features` (`concepts`, `media_type`, `source_key`,
/// `library_id`, `replaces`).
pub fn content_item(item: &Item) -> ContentItem {
    let mut features = std::collections::HashMap::new();
    if !item.concepts.is_empty() {
        features.insert("concepts".to_string(), item.concepts.join(", "));
    }
    if let Some(mt) = &item.media_type {
        features.insert("media_type".to_string(), mt.clone());
    }
    features.insert("source_key".to_string(), item.source_key.clone());
    features.insert("library_id".to_string(), item.id.clone());
    if let Some(old) = &item.replaces {
        features.insert("replaces".to_string(), format!("sha256:{old}"));
    }
    ContentItem {
        item_id: format!("sha256:{}", item.id),
        source: item.source.clone(),
        kind: item.kind.as_str().to_string(),
        title: item.title.clone(),
        url: item.url.clone().unwrap_or_default(),
        text: shorten(&item.text, MAX_TEXT),
        tags: item.tags.clone(),
        palette: item
            .palette
            .iter()
            .map(|s| PaletteColor {
                hex: s.hex.clone(),
                share: f64::from(s.share),
            })
            .collect(),
        fonts: item.typography.iter().map(|f| f.family.clone()).collect(),
        features,
        ingested_at: Some(timestamp(item.ingested_ms)),
        published_at: item.published_ms.map(timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_keeps_char_boundaries() {
        assert_eq!(shorten("abc", 10), "abc");
        assert_eq!(shorten("ééé", 3), "é…");
    }

    #[test]
    fn timestamps_before_the_epoch_are_normalised() {
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
    }
}
