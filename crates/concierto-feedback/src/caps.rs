//! How much of a piece of feedback is kept: every field has a length cap, so
//! that what a sender controls (a Slack message, an email, the web form) cannot
//! grow the store or the runs it starts without bound. A field over its cap is
//! cut at a character boundary, and `metadata["truncated"]` names the fields
//! that were cut (`text`, `subject`, `author`, `run_id`, `metadata`,
//! `attachments`).

use std::collections::HashMap;

use concierto_proto::v1::Feedback;

/// Most characters of `text` kept (longer text is cut, ending with
/// [`TRUNCATION_MARK`]).
pub const MAX_TEXT_CHARS: usize = 20_000;
/// Most characters of `subject` kept.
pub const MAX_SUBJECT_CHARS: usize = 500;
/// Most characters of `author` and `run_id` kept.
pub const MAX_NAME_CHARS: usize = 200;
/// Most `metadata` entries kept (by key order).
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Most characters of a `metadata` key.
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// Most characters of a `metadata` value.
pub const MAX_METADATA_VALUE_CHARS: usize = 1_000;
/// Most attachments listed.
pub const MAX_ATTACHMENTS: usize = 50;
/// Most characters of an attachment's name or content type.
pub const MAX_ATTACHMENT_FIELD_CHARS: usize = 200;
/// What ends a cut `text`.
pub const TRUNCATION_MARK: &str = " […]";
/// `metadata` key naming the fields that were cut, comma-separated.
pub const TRUNCATED_KEY: &str = "truncated";

/// `s` cut to at most `max` characters; true when it was cut.
fn cut(s: &mut String, max: usize) -> bool {
    match s.char_indices().nth(max) {
        Some((i, _)) => {
            s.truncate(i);
            true
        }
        None => false,
    }
}

/// Applies every cap to `fb`, recording what was cut.
pub fn apply(fb: &mut Feedback) {
    let mut cut_fields: Vec<&str> = Vec::new();
    let keep = MAX_TEXT_CHARS.saturating_sub(TRUNCATION_MARK.chars().count());
    if fb.text.chars().nth(MAX_TEXT_CHARS).is_some() {
        cut(&mut fb.text, keep);
        fb.text.push_str(TRUNCATION_MARK);
        cut_fields.push("text");
    }
    if cut(&mut fb.subject, MAX_SUBJECT_CHARS) {
        cut_fields.push("subject");
    }
    if cut(&mut fb.author, MAX_NAME_CHARS) {
        cut_fields.push("author");
    }
    if cut(&mut fb.run_id, MAX_NAME_CHARS) {
        cut_fields.push("run_id");
    }
    if fb.attachments.len() > MAX_ATTACHMENTS {
        fb.attachments.truncate(MAX_ATTACHMENTS);
        cut_fields.push("attachments");
    }
    let mut attachment_cut = false;
    for a in &mut fb.attachments {
        attachment_cut |= cut(&mut a.name, MAX_ATTACHMENT_FIELD_CHARS);
        attachment_cut |= cut(&mut a.content_type, MAX_ATTACHMENT_FIELD_CHARS);
    }
    if attachment_cut && !cut_fields.contains(&"attachments") {
        cut_fields.push("attachments");
    }
    fb.metadata.remove(TRUNCATED_KEY);
    let over = fb.metadata.len() > MAX_METADATA_ENTRIES
        || fb.metadata.iter().any(|(k, v)| {
            k.chars().nth(MAX_METADATA_KEY_CHARS).is_some()
                || v.chars().nth(MAX_METADATA_VALUE_CHARS).is_some()
        });
    if over {
        let mut entries: Vec<(String, String)> =
            std::mem::take(&mut fb.metadata).into_iter().collect();
        entries.sort();
        let mut kept = HashMap::new();
        for (mut k, mut v) in entries.into_iter().take(MAX_METADATA_ENTRIES) {
            cut(&mut k, MAX_METADATA_KEY_CHARS);
            cut(&mut v, MAX_METADATA_VALUE_CHARS);
            kept.entry(k).or_insert(v);
        }
        fb.metadata = kept;
        cut_fields.push("metadata");
    }
    if !cut_fields.is_empty() {
        if fb.metadata.len() >= MAX_METADATA_ENTRIES {
            // Room for the note: it says what happened to the rest.
            if let Some(last) = fb.metadata.keys().max().cloned() {
                fb.metadata.remove(&last);
            }
        }
        fb.metadata
            .insert(TRUNCATED_KEY.to_string(), cut_fields.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierto_proto::v1::Attachment;

    #[test]
    fn long_fields_are_cut_and_named() {
        let mut fb = Feedback {
            text: "é".repeat(MAX_TEXT_CHARS + 10),
            subject: "s".repeat(MAX_SUBJECT_CHARS + 1),
            author: "Dana".into(),
            attachments: vec![
                Attachment {
                    name: "n".repeat(300),
                    ..Default::default()
                };
                MAX_ATTACHMENTS + 5
            ],
            metadata: (0..100)
                .map(|i| (format!("k{i:03}"), "v".repeat(5_000)))
                .collect(),
            ..Default::default()
        };
        apply(&mut fb);
        assert_eq!(fb.text.chars().count(), MAX_TEXT_CHARS);
        assert!(fb.text.ends_with(TRUNCATION_MARK));
        assert_eq!(fb.subject.chars().count(), MAX_SUBJECT_CHARS);
        assert_eq!(fb.author, "Dana");
        assert_eq!(fb.attachments.len(), MAX_ATTACHMENTS);
        assert!(
            fb.attachments
                .iter()
                .all(|a| a.name.len() == MAX_ATTACHMENT_FIELD_CHARS)
        );
        assert_eq!(fb.metadata.len(), MAX_METADATA_ENTRIES);
        assert_eq!(
            fb.metadata.get(TRUNCATED_KEY).map(String::as_str),
            Some("text,subject,attachments,metadata")
        );
        assert!(
            fb.metadata
                .iter()
                .all(|(k, v)| k == TRUNCATED_KEY || v.len() == MAX_METADATA_VALUE_CHARS)
        );
    }

    #[test]
    fn feedback_within_the_caps_is_untouched() {
        let mut fb = Feedback {
            text: "The banner colour is off-brand.".into(),
            metadata: [("email".to_string(), "a@example.com".to_string())].into(),
            ..Default::default()
        };
        let before = fb.clone();
        apply(&mut fb);
        assert_eq!(fb, before);
    }
}
