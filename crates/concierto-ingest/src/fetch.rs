//! `ingest.fetch`: a web page fetched for an agent's `WebFetch` tool
//! (`WebFetchRequest` → `WebFetchResponse`), under the same rules as the web
//! sources, because the ingester is the one part of the studio that fetches
//! from the web:
//!
//! - the host must be allow-listed: the hosts of the studio's `web_scraper`
//!   sources, their `allow_hosts`, the ingester's own, and
//!   `agents.tools.web_fetch.allow_hosts`;
//! - public addresses only unless `agents.tools.web_fetch.allow_private_networks`
//!   (or the ingester's `allow_private_networks`);
//! - the host's robots.txt, per-host pacing, every redirect hop checked;
//! - `agents.tools.web_fetch.max_bytes` and `.timeout` (the whole fetch).
//!
//! HTML becomes text as the web source reads it ([`extract::page`]); other
//! `text/*`, JSON and XML answers are passed as text; anything else (images,
//! PDFs, archives) is refused. The text is cut to `max_text_bytes`, and the
//! cut is said. A refusal is the `Concierto-Error` header
//! (`permission_denied: …`, `invalid_argument: …`, `unavailable: …`), whose
//! text the model sees.

use std::sync::{Arc, RwLock};

use concierto_bus::{Bus, BusExt, Outgoing, encode};
use concierto_content::extract;
use concierto_core::config::{SourceKind, Studio, WebFetchSettings};
use concierto_core::service::StopSignal;
use concierto_core::store::KvStore;
use concierto_core::subjects;
use concierto_proto::v1::{WebFetchRequest, WebFetchResponse};
use url::Url;

use crate::IngestOptions;
use crate::error::IngestError;
use crate::http::{Fetched, Fetcher};
use crate::netguard::Reach;

/// Longest URL accepted.
pub const MAX_URL_BYTES: usize = 4096;
/// Fetches answered at once; further requests wait their turn.
pub const MAX_CONCURRENT_FETCHES: usize = 16;

/// What answers `ingest.fetch`: the rules and a client of its own.
pub struct WebFetcher {
    fetcher: Fetcher,
    allow: Vec<String>,
    reach: Reach,
    settings: WebFetchSettings,
}

impl std::fmt::Debug for WebFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebFetcher")
            .field("allow", &self.allow)
            .field("settings", &self.settings)
            .finish()
    }
}

/// The hosts `WebFetch` may reach in `studio` (see the module documentation).
pub fn allow_list(studio: &Studio, opts: &IngestOptions) -> Vec<String> {
    let mut allow: Vec<String> = Vec::new();
    for s in studio
        .content_sources
        .iter()
        .filter(|s| s.kind == SourceKind::WebScraper)
    {
        if let Some(h) = Url::parse(&s.location)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        {
            allow.push(h);
        }
        allow.extend(s.allow_hosts.iter().cloned());
    }
    allow.extend(opts.allow_hosts.iter().cloned());
    allow.extend(studio.agents.tools.web_fetch.allow_hosts.iter().cloned());
    allow.sort();
    allow.dedup();
    allow
}

impl WebFetcher {
    /// For `studio`, with the ingester's options (user agent, pacing,
    /// robots.txt cache time, fixed addresses) and `store` for nothing but
    /// the client's bookkeeping.
    pub fn new(
        studio: &Studio,
        opts: &IngestOptions,
        store: Arc<dyn KvStore>,
    ) -> Result<Self, IngestError> {
        let settings = studio.agents.tools.web_fetch.clone();
        let mut o = opts.clone();
        o.max_response_bytes = settings.max_bytes;
        o.http_timeout = settings.timeout;
        Ok(WebFetcher {
            fetcher: Fetcher::new(&o, store)?,
            allow: allow_list(studio, opts),
            reach: Reach::allowing_private(
                settings.allow_private_networks || opts.allow_private_networks,
            ),
            settings,
        })
    }

    /// The hosts it may reach.
    pub fn allow(&self) -> &[String] {
        &self.allow
    }

    /// The studio's `agents.tools.web_fetch` it follows.
    pub fn settings(&self) -> &WebFetchSettings {
        &self.settings
    }

    /// Fetches `req.url` under the rules: the page as text, or `(code, message)`.
    pub async fn fetch(
        &self,
        req: &WebFetchRequest,
    ) -> Result<WebFetchResponse, (&'static str, String)> {
        let raw = req.url.trim();
        if raw.len() > MAX_URL_BYTES {
            return Err((
                "invalid_argument",
                format!("the URL is over {MAX_URL_BYTES} bytes"),
            ));
        }
        let url = Url::parse(raw)
            .map_err(|e| ("invalid_argument", format!("{raw:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err((
                "invalid_argument",
                format!("only http and https URLs are fetched, not {}", url.scheme()),
            ));
        }
        let got = tokio::time::timeout(
            self.settings.timeout,
            self.fetcher.get(&url, &self.allow, false, self.reach),
        )
        .await
        .map_err(|_| {
            (
                "unavailable",
                format!("fetch {url}: no answer within {:?}", self.settings.timeout),
            )
        })?;
        let resp = match got {
            Ok(Fetched::Body(r)) => r,
            Ok(Fetched::NotModified) => {
                return Err((
                    "unavailable",
                    format!("fetch {url}: 304 without a request for it"),
                ));
            }
            Err(e) => {
                let text = e.to_string();
                let code = match &e {
                    IngestError::PrivateAddress { .. } => "permission_denied",
                    IngestError::Fetch { message, .. }
                        if message.contains("allow list")
                            || message.contains("disallowed by the host's robots.txt") =>
                    {
                        "permission_denied"
                    }
                    _ => "unavailable",
                };
                let hint = if text.contains("allow list") {
                    " (agents.tools.web_fetch.allow_hosts adds hosts)"
                } else {
                    ""
                };
                return Err((code, format!("{text}{hint}")));
            }
        };
        let ct = resp.content_type().unwrap_or("").to_string();
        let lower = ct.to_ascii_lowercase();
        let head =
            String::from_utf8_lossy(&resp.body[..resp.body.len().min(512)]).to_ascii_lowercase();
        let is_html = lower.contains("html")
            || (lower.is_empty() && (head.contains("<html") || head.contains("<!doctype html")));
        let (title, text) = if is_html {
            let html = extract::decode_html(&resp.body, resp.content_type());
            let page = extract::page(&html, Some(resp.url.as_str()));
            (page.title, page.text)
        } else if lower.is_empty()
            || lower.starts_with("text/")
            || lower.contains("json")
            || lower.contains("xml")
        {
            if resp.body.iter().take(4096).any(|&b| b == 0) {
                return Err((
                    "invalid_argument",
                    format!("{url} answered binary content, not text"),
                ));
            }
            (
                String::new(),
                String::from_utf8_lossy(&resp.body).into_owned(),
            )
        } else {
            return Err((
                "invalid_argument",
                format!("{url} answered {ct}, which is not text; only pages and text are fetched"),
            ));
        };
        let (text, truncated) = cut(text, self.settings.max_text_bytes);
        Ok(WebFetchResponse {
            url: resp.url.to_string(),
            status: u32::from(resp.status),
            content_type: ct,
            title,
            text,
            truncated,
        })
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

/// Answers `ingest.fetch` (queue group `ingest`) until `stop`; each request
/// on its own task, at most [`MAX_CONCURRENT_FETCHES`] at once.
pub async fn serve(
    bus: Arc<dyn Bus>,
    fetcher: Arc<WebFetcher>,
    stop: StopSignal,
) -> Result<(), concierto_bus::BusError> {
    serve_shared(bus, SharedWebFetcher::new(fetcher), stop).await
}

/// The [`WebFetcher`] `ingest.fetch` uses now, replaced whole when a changed
/// studio changes its rules (the next request follows them). Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedWebFetcher(Arc<RwLock<Arc<WebFetcher>>>);

impl SharedWebFetcher {
    /// Starts with `fetcher`.
    pub fn new(fetcher: Arc<WebFetcher>) -> Self {
        SharedWebFetcher(Arc::new(RwLock::new(fetcher)))
    }

    /// The fetcher now.
    pub fn get(&self) -> Arc<WebFetcher> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces it.
    pub fn set(&self, fetcher: Arc<WebFetcher>) {
        match self.0.write() {
            Ok(mut g) => *g = fetcher,
            Err(p) => *p.into_inner() = fetcher,
        }
    }
}

/// [`serve`] with a fetcher that can be replaced while it serves.
pub async fn serve_shared(
    bus: Arc<dyn Bus>,
    fetcher: SharedWebFetcher,
    mut stop: StopSignal,
) -> Result<(), concierto_bus::BusError> {
    let mut sub = bus
        .queue_subscribe_proto::<WebFetchRequest>(subjects::INGEST_FETCH, "ingest")
        .await?;
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES));
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stop.stopped() => break,
                n = sub.next() => n,
            };
            let Some((req, msg)) = next else { break };
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (bus, fetcher) = (bus.clone(), fetcher.get());
            tokio::spawn(async move {
                let _permit = permit;
                let out = match fetcher.fetch(&req).await {
                    Ok(r) => {
                        tracing::debug!(url = %req.url, role = %req.role, bytes = r.text.len(), "page fetched for a tool");
                        encode(&r)
                    }
                    Err((code, m)) => {
                        tracing::info!(url = %req.url, role = %req.role, reason = %m, "tool fetch refused");
                        Outgoing::new(Vec::new())
                            .header(subjects::ERROR_HEADER, format!("{code}: {m}"))
                    }
                };
                if let Err(e) = bus.respond(&reply, out).await {
                    tracing::warn!(error = %e, "answering ingest.fetch failed");
                }
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_characters_whole() {
        let (t, cutted) = cut("héllo".into(), 2);
        assert_eq!((t.as_str(), cutted), ("h", true));
        let (t, cutted) = cut("abc".into(), 3);
        assert_eq!((t.as_str(), cutted), ("abc", false));
    }
}
