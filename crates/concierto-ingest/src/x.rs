//! An X/Twitter account (`twitter_stream`) through the X API v2: the user is
//! looked up once by handle (`GET /2/users/by/username/{handle}`, id kept in
//! the store), then its timeline is read since the last post seen
//! (`GET /2/users/{id}/tweets?since_id=...`, cursor kept in the store), with
//! the bearer token from the environment. `x-rate-limit-remaining: 0` means
//! no request before `x-rate-limit-reset`; so does a 429.

use chrono::{DateTime, TimeZone, Utc};
use concierto_content::{Kind, NewItem, extract};
use concierto_core::config::ContentSource;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;
use url::Url;

use crate::TREE;
use crate::error::IngestError;
use crate::ingester::{CycleReport, Ingester};
use crate::netguard::Reach;

/// How long to stay away after a 429 that says nothing about its reset.
const DEFAULT_BACKOFF: chrono::Duration = chrono::Duration::minutes(15);

fn key(source: &str, what: &str) -> Vec<u8> {
    format!("x/{source}/{what}").into_bytes()
}

fn valid_handle(h: &str) -> bool {
    (1..=15).contains(&h.len()) && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Api<'a> {
    ing: &'a Ingester,
    source: &'a str,
    auth: HeaderValue,
}

impl Api<'_> {
    /// Waits for (or refuses during) a rate-limit window.
    async fn wait_for_window(&self) -> Result<(), IngestError> {
        let Some(until) = self.ing.blocked_until(self.source) else {
            return Ok(());
        };
        let now = self.ing.clock().now();
        if until <= now {
            return Ok(());
        }
        let wait = (until - now).to_std().unwrap_or_default();
        if wait <= self.ing.opts().x_max_rate_wait {
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        Err(IngestError::RateLimited { until })
    }

    async fn get(&self, url: &Url) -> Result<Value, IngestError> {
        self.wait_for_window().await?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, self.auth.clone());
        let reach = Reach::allowing_private(self.ing.opts().allow_private_networks);
        let resp = self.ing.fetcher().send(url, headers, reach).await?;
        let reset = resp
            .header("x-rate-limit-reset")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(|s| Utc.timestamp_opt(s, 0).single());
        let remaining = resp
            .header("x-rate-limit-remaining")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let now = self.ing.clock().now();
        if resp.status == 429 {
            let until = reset.filter(|r| *r > now).unwrap_or(now + DEFAULT_BACKOFF);
            self.ing.block_until(self.source, until);
            return Err(IngestError::RateLimited { until });
        }
        if remaining == Some(0)
            && let Some(reset) = reset
        {
            self.ing.block_until(self.source, reset);
        }
        let short = |b: &[u8]| {
            let s = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
            s.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        if !(200..300).contains(&resp.status) {
            return Err(IngestError::Api {
                url: url.to_string(),
                status: resp.status,
                message: short(&resp.body),
            });
        }
        let v: Value = serde_json::from_slice(&resp.body).map_err(|e| IngestError::BadContent {
            url: url.to_string(),
            message: format!("not JSON: {e}"),
        })?;
        if v.get("data").is_none()
            && let Some(errors) = v.get("errors").and_then(Value::as_array)
            && !errors.is_empty()
        {
            let first = &errors[0];
            let message = ["detail", "message", "title"]
                .iter()
                .find_map(|k| first.get(*k).and_then(Value::as_str))
                .unwrap_or("error")
                .to_string();
            return Err(IngestError::Api {
                url: url.to_string(),
                status: resp.status,
                message,
            });
        }
        Ok(v)
    }
}

fn numeric_max<'a>(a: &'a str, b: &'a str) -> &'a str {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => {
            if x >= y {
                a
            } else {
                b
            }
        }
        _ => a.max(b),
    }
}

/// A post and its media as an item.
fn post_item(source: &str, handle: &str, t: &Value, media: &[Value]) -> Option<NewItem> {
    let id = t.get("id")?.as_str()?;
    let text = t.get("text").and_then(Value::as_str).unwrap_or("");
    let keys: Vec<&str> = t
        .pointer("/attachments/media_keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let alts: Vec<String> = media
        .iter()
        .filter(|m| {
            m.get("media_key")
                .and_then(Value::as_str)
                .is_some_and(|k| keys.contains(&k))
        })
        .filter_map(|m| m.get("alt_text").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let tags: Vec<String> = t
        .pointer("/entities/hashtags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|h| h.get("tag").and_then(Value::as_str))
                .filter(|t| t.len() <= 100)
                .take(32)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let first_line = text.lines().next().unwrap_or("").trim();
    let title: String = if first_line.chars().count() > 80 {
        format!("{}…", first_line.chars().take(80).collect::<String>())
    } else {
        first_line.to_string()
    };
    let mut body = text.to_string();
    for a in &alts {
        body.push_str("\nimage: ");
        body.push_str(a);
    }
    let alt_refs: Vec<&str> = alts.iter().map(String::as_str).collect();
    let mut item = NewItem::new(Kind::Post, source, id)
        .url(format!("https://x.com/{handle}/status/{id}"))
        .title(if title.is_empty() {
            format!("@{handle} {id}")
        } else {
            title
        })
        .text(body)
        .tags(tags)
        .concepts(extract::concepts("", &alt_refs, ""));
    if let Some(ts) = t
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    {
        item = item.published_ms(ts.timestamp_millis());
    }
    Some(item)
}

/// Reads an X account's new posts once.
pub(crate) async fn run(
    ing: &Ingester,
    source: &ContentSource,
    report: &mut CycleReport,
) -> Result<(), IngestError> {
    let handle = source.location.trim().trim_start_matches('@');
    if !valid_handle(handle) {
        return Err(IngestError::Config(format!(
            "source {}: {:?} is not an X handle (1 to 15 letters, digits or _)",
            source.name, source.location
        )));
    }
    let env = &ing.opts().x_token_env;
    let token = std::env::var(env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            IngestError::Config(format!(
                "source {}: no X bearer token in the environment variable {env} (set it, or \
                 give the source `enabled: false`)",
                source.name
            ))
        })?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
        IngestError::Config(format!("{env} holds characters a header cannot carry"))
    })?;
    let api = Api {
        ing,
        source: &source.name,
        auth,
    };
    let base = ing.opts().x_api_base.trim_end_matches('/').to_string();
    let parse = |s: String| {
        Url::parse(&s).map_err(|e| IngestError::Config(format!("X API URL {s:?}: {e}")))
    };
    let store = ing.store();
    let user_key = key(
        &source.name,
        &format!("user/{}", handle.to_ascii_lowercase()),
    );
    let user_id = match store.get(TREE, &user_key)? {
        Some(id) => String::from_utf8_lossy(&id).into_owned(),
        None => {
            let v = api
                .get(&parse(format!("{base}/2/users/by/username/{handle}"))?)
                .await?;
            let id = v
                .pointer("/data/id")
                .and_then(Value::as_str)
                .ok_or_else(|| IngestError::BadContent {
                    url: format!("{base}/2/users/by/username/{handle}"),
                    message: "no data.id in the user lookup".into(),
                })?
                .to_string();
            store.put(TREE, &user_key, id.as_bytes())?;
            id
        }
    };
    let since_key = key(&source.name, "since_id");
    let since = store
        .get(TREE, &since_key)?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let pages = if since.is_some() {
        ing.opts().x_max_pages.max(1)
    } else {
        1
    };
    let mut items = Vec::new();
    let mut newest: Option<String> = None;
    let mut token: Option<String> = None;
    let mut complete = true;
    for page in 0..pages {
        let mut url = parse(format!("{base}/2/users/{user_id}/tweets"))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &since {
                q.append_pair("since_id", s);
            }
            q.append_pair("max_results", "100")
                .append_pair("tweet.fields", "created_at,entities,attachments")
                .append_pair("expansions", "attachments.media_keys")
                .append_pair("media.fields", "url,alt_text");
            if let Some(t) = &token {
                q.append_pair("pagination_token", t);
            }
        }
        let v = match api.get(&url).await {
            Ok(v) => v,
            Err(e) if page > 0 => {
                tracing::warn!(source = %source.name, error = %e, "timeline paging stopped; the rest is read next cycle");
                complete = false;
                break;
            }
            Err(e) => return Err(e),
        };
        let media: Vec<Value> = v
            .pointer("/includes/media")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for t in v
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match post_item(&source.name, handle, t, &media) {
                Some(item) => {
                    newest = Some(match &newest {
                        Some(n) => numeric_max(n, &item.source_key).to_string(),
                        None => item.source_key.clone(),
                    });
                    items.push(item);
                }
                None => {
                    report.skipped += 1;
                    tracing::warn!(source = %source.name, "a post without an id; skipped");
                }
            }
        }
        token = v
            .pointer("/meta/next_token")
            .and_then(Value::as_str)
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let results = ing.store_items_of(source, items, report).await?;
    if complete
        && results.iter().all(Result::is_ok)
        && let Some(newest) = newest
    {
        let next = match &since {
            Some(s) => numeric_max(s, &newest).to_string(),
            None => newest,
        };
        store.put(TREE, &since_key, next.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_become_items_with_hashtags_and_alt_texts() {
        let t: Value = serde_json::json!({
            "id": "1001", "text": "New #brutalism poster series\nmore", "created_at": "2026-03-01T10:00:00.000Z",
            "entities": {"hashtags": [{"tag": "brutalism"}]},
            "attachments": {"media_keys": ["3_1"]}
        });
        let media = vec![
            serde_json::json!({"media_key": "3_1", "alt_text": "a duotone poster", "type": "photo"}),
        ];
        let item = post_item("figs", "FigsFromPlums", &t, &media).unwrap();
        assert_eq!(item.source_key, "1001");
        assert_eq!(item.title, "New #brutalism poster series");
        assert_eq!(item.tags, vec!["brutalism"]);
        assert!(item.text.contains("a duotone poster"));
        assert_eq!(
            item.url.as_deref(),
            Some("https://x.com/FigsFromPlums/status/1001")
        );
        assert!(item.published_ms.is_some());
    }

    #[test]
    fn ids_compare_as_numbers() {
        assert_eq!(numeric_max("999", "1000"), "1000");
        assert!(valid_handle("FigsFromPlums") && !valid_handle("no spaces"));
    }
}
