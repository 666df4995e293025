//! Answered feedback as JSON files in the `user_feedback` content source's
//! folder (`<dir>/<feedback id>.json`, written to a temporary name then
//! renamed), for the ingester and its learner (user-researcher):
//!
//! ```json
//! {"feedback_id": "...", "channel": "email", "author": "...", "subject": "...",
//!  "text": "...", "received_at": "...", "category": "brand",
//!  "roles": ["brand-guardian"], "reply": "...", "sent_at": "...", "response_seconds": 12.5}
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::engine::{Item, channel_token};

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// The file name of an item: its id with anything but `[A-Za-z0-9._@+=-]` as `_`.
pub fn file_name(feedback_id: &str) -> String {
    let safe: String = feedback_id
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@+=-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.json", safe.trim_start_matches('.'))
}

/// Writes one answered item; returns the file.
pub fn write(dir: &Path, item: &Item) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let fb = item.feedback().unwrap_or_default();
    let doc = json!({
        "feedback_id": item.feedback_id,
        "channel": channel_token(fb.channel),
        "author": fb.author,
        "subject": fb.subject,
        "text": fb.text,
        "received_at": rfc3339(item.received_ms()),
        "category": item.category,
        "roles": item.roles,
        "reply": item.text,
        "sent_at": item.sent_ms.map(rfc3339),
        "response_seconds": item.to_reply().response_seconds,
    });
    let path = dir.join(file_name(&item.feedback_id));
    let tmp = dir.join(format!(".{}.tmp", file_name(&item.feedback_id)));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(
            serde_json::to_string_pretty(&doc)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
