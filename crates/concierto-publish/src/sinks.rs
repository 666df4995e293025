//! Where deliverables go, one attempt at a time: the content library (a
//! `library.put` request to the ingest service), a folder (a Markdown file with
//! JSON front matter, written atomically), a webhook (an HMAC-signed POST) and
//! Slack (`chat.postMessage`). Each attempt ends in an [`Attempt`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_bus::{Bus, encode};
use concierto_core::config::{PublisherDef, PublisherKind};
use concierto_core::subjects;
use concierto_proto::v1;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::book::{Attempt, made_at};

/// Most bytes of a Slack message's text (Slack cuts at 40,000 characters).
pub const MAX_SLACK_TEXT: usize = 39_000;
/// Most bytes of an answer read from a webhook or Slack.
pub const MAX_ANSWER: usize = 64 * 1024;
/// Most characters of a file name's title part.
const MAX_SLUG: usize = 60;

/// The deliverable as JSON: the webhook's body and the folder's front matter
/// (`content` left out there).
pub fn json_of(d: &v1::Deliverable, with_content: bool, now: DateTime<Utc>) -> serde_json::Value {
    let mut labels = d.labels.clone();
    labels.sort();
    let params: std::collections::BTreeMap<&String, &String> = d.params.iter().collect();
    let mut v = serde_json::json!({
        "id": d.id,
        "run": d.run_id,
        "workflow": d.workflow,
        "step": d.step_id,
        "role": d.role,
        "title": d.title,
        "at": made_at(d, now).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "labels": labels,
        "params": params,
        "content_type": d.content_type,
    });
    if with_content && let Some(m) = v.as_object_mut() {
        m.insert("content".into(), d.content.clone().into());
    }
    v
}

/// A file name from the deliverable that cannot leave its folder:
/// `<day>-<workflow>-<title>-<8 hex of the id>.md`, each part lowercase ASCII
/// letters, digits and `-` only.
pub fn file_name(d: &v1::Deliverable, now: DateTime<Utc>) -> String {
    let slug = |s: &str| {
        let mut out = String::new();
        for c in s.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.ends_with('-') {
                out.push('-');
            }
            if out.len() >= MAX_SLUG {
                break;
            }
        }
        let t = out.trim_matches('-').to_string();
        if t.is_empty() { "untitled".into() } else { t }
    };
    let hash = hex::encode(Sha256::digest(d.id.as_bytes()));
    format!(
        "{}-{}-{}-{}.md",
        made_at(d, now).format("%Y-%m-%d"),
        slug(&d.workflow),
        slug(&d.title),
        &hash[..8]
    )
}

/// Writes `d` into `dir` as Markdown with JSON front matter (the JSON object,
/// a blank line, then the content), atomically: a temporary file in the same
/// folder, synced, then renamed over the final name.
pub fn write_file(dir: &Path, d: &v1::Deliverable, now: DateTime<Utc>) -> Attempt {
    let name = file_name(d, now);
    // `file_name` gives one plain component; refuse anything else all the same.
    let mut parts = Path::new(&name).components();
    if !matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) {
        return Attempt::Failed(format!(
            "refused file name {name:?}: it is not a plain name"
        ));
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Attempt::Retry(format!("creating {}: {e}", dir.display()));
    }
    let path = dir.join(&name);
    let front = match serde_json::to_string_pretty(&json_of(d, false, now)) {
        Ok(f) => f,
        Err(e) => return Attempt::Failed(format!("encoding the front matter: {e}")),
    };
    let body = format!("{front}\n\n{}\n", d.content.trim_end());
    let tmp = dir.join(format!(".{name}.{}.tmp", rand::random::<u32>()));
    let written = (|| -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    match written {
        Ok(()) => Attempt::Done(path.display().to_string()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Attempt::Retry(format!("writing {}: {e}", path.display()))
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>` with `key`.
pub fn signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What an HTTP status means for a delivery: 2xx done, 408/429/5xx again, other failed.
fn by_status(status: reqwest::StatusCode, what: &str) -> Attempt {
    let code = status.as_u16();
    if status.is_success() {
        Attempt::Done(format!("{what} answered {code}"))
    } else if code == 408 || code == 429 || status.is_server_error() {
        Attempt::Retry(format!("{what} answered {code}"))
    } else {
        Attempt::Failed(format!("{what} answered {code}"))
    }
}

fn env_secret(var: &str, what: &str) -> Result<String, Attempt> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(Attempt::Failed(format!(
            "the {what} variable {var} is not set"
        ))),
    }
}

/// The I/O of every publisher kind.
#[derive(Clone)]
pub struct Sinks {
    bus: Arc<dyn Bus>,
    http: reqwest::Client,
    library_timeout: Duration,
}

impl Sinks {
    /// Sinks using `bus` for the library.
    pub fn new(bus: Arc<dyn Bus>, library_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("concierto-publish/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Sinks {
            bus,
            http,
            library_timeout,
        }
    }

    /// Stores `d` in the content library through the ingest service.
    pub async fn library(&self, d: &v1::Deliverable) -> Attempt {
        let asked = self
            .bus
            .request(subjects::LIBRARY_PUT, encode(d), self.library_timeout)
            .await;
        let msg = match asked {
            Ok(m) => m,
            Err(e) => return Attempt::Retry(format!("library.put: {e}")),
        };
        if let Some(err) = msg.headers.get(subjects::ERROR_HEADER) {
            return if err.starts_with("invalid_argument") {
                Attempt::Failed(format!("library.put: {err}"))
            } else {
                Attempt::Retry(format!("library.put: {err}"))
            };
        }
        match concierto_bus::decode::<v1::ContentItem>(&msg) {
            Ok(item) => Attempt::Done(format!("content item {}", item.item_id)),
            Err(e) => Attempt::Retry(format!("library.put answered something else: {e}")),
        }
    }

    /// One attempt of publisher `p` with `d`.
    pub async fn publish(
        &self,
        p: &PublisherDef,
        d: &v1::Deliverable,
        now: DateTime<Utc>,
    ) -> Attempt {
        match &p.kind {
            PublisherKind::Folder { path } => {
                let (dir, d) = (PathBuf::from(path), d.clone());
                tokio::task::spawn_blocking(move || write_file(&dir, &d, now))
                    .await
                    .unwrap_or_else(|e| Attempt::Retry(format!("writer thread: {e}")))
            }
            PublisherKind::Webhook { url, secret_env } => {
                self.webhook(url, secret_env, p.timeout, d, now).await
            }
            PublisherKind::Slack {
                channel,
                token_env,
                api_base,
            } => self.slack(api_base, channel, token_env, p.timeout, d).await,
        }
    }

    async fn webhook(
        &self,
        url: &str,
        secret_env: &str,
        timeout: Duration,
        d: &v1::Deliverable,
        now: DateTime<Utc>,
    ) -> Attempt {
        let key = match env_secret(secret_env, "webhook HMAC key") {
            Ok(k) => k,
            Err(a) => return a,
        };
        let body = match serde_json::to_vec(&json_of(d, true, now)) {
            Ok(b) => b,
            Err(e) => return Attempt::Failed(format!("encoding the body: {e}")),
        };
        let timestamp = now.timestamp().to_string();
        let sig = signature(key.as_bytes(), &timestamp, &body);
        let sent = self
            .http
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("Concierto-Signature", sig)
            .header("Concierto-Timestamp", &timestamp)
            .header("Idempotency-Key", &d.id)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) => by_status(r.status(), "the webhook"),
            Err(e) if e.is_timeout() => {
                Attempt::Retry(format!("the webhook timed out after {timeout:?}"))
            }
            Err(e) => Attempt::Retry(format!("the webhook: {e}")),
        }
    }

    async fn slack(
        &self,
        api_base: &str,
        channel: &str,
        token_env: &str,
        timeout: Duration,
        d: &v1::Deliverable,
    ) -> Attempt {
        let token = match env_secret(token_env, "Slack bot token") {
            Ok(t) => t,
            Err(a) => return a,
        };
        let mut text = format!("*{}*\n\n{}", d.title, d.content);
        if text.len() > MAX_SLACK_TEXT {
            let mut end = MAX_SLACK_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str("\n[cut]");
        }
        let sent = self
            .http
            .post(format!("{api_base}/chat.postMessage"))
            .timeout(timeout)
            .bearer_auth(token)
            .json(&serde_json::json!({"channel": channel, "text": text}))
            .send()
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Attempt::Retry(format!("Slack timed out after {timeout:?}"));
            }
            Err(e) => return Attempt::Retry(format!("Slack: {e}")),
        };
        if !r.status().is_success() {
            return by_status(r.status(), "Slack");
        }
        let bytes = match r.bytes().await {
            Ok(b) if b.len() <= MAX_ANSWER => b,
            Ok(b) => return Attempt::Retry(format!("Slack answered {} bytes", b.len())),
            Err(e) => return Attempt::Retry(format!("reading Slack's answer: {e}")),
        };
        let answer: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return Attempt::Retry(format!("Slack's answer is not JSON: {e}")),
        };
        if answer.get("ok").and_then(serde_json::Value::as_bool) == Some(true) {
            let ts = answer.get("ts").and_then(|t| t.as_str()).unwrap_or("");
            return Attempt::Done(format!("posted to {channel} (ts {ts})"));
        }
        let error = answer
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("unknown error");
        match error {
            "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout" => Attempt::Retry(format!("Slack: {error}")),
            _ => Attempt::Failed(format!("Slack: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(title: &str) -> v1::Deliverable {
        v1::Deliverable {
            id: "daily@2026-12-06T09:00:00Z/write".into(),
            workflow: "daily_content_generation".into(),
            title: title.into(),
            content: "# x\nbody".into(),
            ..Default::default()
        }
    }

    #[test]
    fn file_names_are_plain_whatever_the_title() {
        let now = Utc::now();
        for t in [
            "../../etc/passwd",
            "/abs/path",
            "a\\b\0c",
            "..",
            "",
            "ünïcödé ✨",
        ] {
            let n = file_name(&d(t), now);
            assert!(
                !n.contains('/') && !n.contains('\\') && !n.contains(".."),
                "{n}"
            );
            assert!(n.ends_with(".md") && n.is_ascii(), "{n}");
        }
        assert!(file_name(&d("../../etc/passwd"), now).contains("-etc-passwd-"));
        assert!(file_name(&d(&"x".repeat(500)), now).len() <= 10 + 1 + 60 + 1 + 60 + 1 + 8 + 3);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 style check against a known value computed independently.
        let s = signature(b"key", "1", b"{}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert_eq!(s, signature(b"key", "1", b"{}"));
        assert_ne!(s, signature(b"key", "2", b"{}"));
        assert_ne!(s, signature(b"other", "1", b"{}"));
    }

    #[test]
    fn statuses_map_to_done_retry_or_failed() {
        use reqwest::StatusCode as S;
        assert!(matches!(by_status(S::NO_CONTENT, "x"), Attempt::Done(_)));
        assert!(matches!(
            by_status(S::TOO_MANY_REQUESTS, "x"),
            Attempt::Retry(_)
        ));
        assert!(matches!(by_status(S::BAD_GATEWAY, "x"), Attempt::Retry(_)));
        assert!(matches!(by_status(S::FORBIDDEN, "x"), Attempt::Failed(_)));
    }
}
