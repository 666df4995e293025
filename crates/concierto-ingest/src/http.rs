//! [`Fetcher`]: every HTTP request of the web and X sources goes through it.
//! It keeps to the allow list, honours robots.txt (cached per host), waits
//! out a minimum interval per host, asks conditionally with the ETag and
//! Last-Modified it remembered (store tree `ingest`, keys `http/<url>`), stops
//! reading past the size limit (a declared `Content-Length` over it is refused
//! before the body is read; a body that grows past it is cut off), and gives
//! up after the timeout. Unless the source allows private networks, it
//! connects only to public addresses ([`crate::netguard`]: literal addresses
//! checked before connecting, names by the resolver). Redirects are followed
//! by hand (at most five) so every hop meets the same rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concierto_core::store::KvStore;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

use crate::error::IngestError;
use crate::netguard::{self, PublicOnly, Reach};
use crate::robots::Robots;
use crate::{IngestOptions, TREE};

const MAX_REDIRECTS: usize = 5;
const MAX_ROBOTS_BYTES: u64 = 512 * 1024;

/// A response read in full.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// Where it finally came from (after redirects).
    pub url: Url,
    /// HTTP status.
    pub status: u16,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header(header::CONTENT_TYPE.as_str())
    }
}

/// What a conditional GET got.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// 304: nothing changed since the remembered validators.
    NotModified,
    /// A 2xx response.
    Body(Box<Response>),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Validators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
}

/// The HTTP client of the ingester.
pub(crate) struct Fetcher {
    /// Connects to public addresses only (its resolver drops the others).
    public: reqwest::Client,
    /// Connects anywhere (sources with `allow_private_networks`).
    any: reqwest::Client,
    store: Arc<dyn KvStore>,
    user_agent: String,
    max_bytes: u64,
    min_interval: Duration,
    robots_ttl: Duration,
    next_slot: Mutex<HashMap<String, Instant>>,
    robots: Mutex<HashMap<String, (Instant, Robots)>>,
}

fn fetch_err(url: &Url, message: impl Into<String>) -> IngestError {
    IngestError::Fetch {
        url: url.to_string(),
        message: message.into(),
    }
}

/// What failed, without the `fetch <url>:` an error of [`fetch_err`] starts with.
fn error_text(e: &IngestError) -> String {
    match e {
        IngestError::Fetch { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn authority(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

fn http_key(url: &Url) -> Vec<u8> {
    format!("http/{url}").into_bytes()
}

/// Whether `url`'s host is one of `allow` (case-insensitive, ports ignored).
pub(crate) fn host_allowed(url: &Url, allow: &[String]) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    matches!(url.scheme(), "http" | "https") && allow.iter().any(|h| h.eq_ignore_ascii_case(host))
}

impl Fetcher {
    pub fn new(opts: &IngestOptions, store: Arc<dyn KvStore>) -> Result<Self, IngestError> {
        let builder = || {
            let mut b = reqwest::Client::builder()
                .timeout(opts.http_timeout)
                .connect_timeout(opts.http_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(opts.user_agent.clone());
            for (host, addr) in &opts.resolve {
                b = b.resolve(host, *addr);
            }
            b
        };
        let client_err = |e: reqwest::Error| IngestError::Config(format!("HTTP client: {e}"));
        let public = builder()
            .dns_resolver(Arc::new(PublicOnly))
            .build()
            .map_err(client_err)?;
        let any = builder().build().map_err(client_err)?;
        Ok(Fetcher {
            public,
            any,
            store,
            user_agent: opts.user_agent.clone(),
            max_bytes: opts.max_response_bytes,
            min_interval: opts.min_host_interval,
            robots_ttl: opts.robots_ttl,
            next_slot: Mutex::new(HashMap::new()),
            robots: Mutex::new(HashMap::new()),
        })
    }

    /// Waits until this host may be asked again, and books the next slot.
    async fn pace(&self, url: &Url) {
        let at = {
            let mut slots = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = slots.entry(authority(url)).or_insert(now);
            let at = (*slot).max(now);
            *slot = at + self.min_interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// One request, paced, its body read up to the size limit; to a public
    /// address only unless `reach` is [`Reach::Any`].
    pub async fn send(
        &self,
        url: &Url,
        headers: HeaderMap,
        reach: Reach,
    ) -> Result<Response, IngestError> {
        let client = match reach {
            Reach::Public => {
                netguard::check_literal(url).map_err(|np| refused(url, &np))?;
                &self.public
            }
            Reach::Any => &self.any,
        };
        self.pace(url).await;
        let mut resp = client
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| request_err(url, &e))?;
        if let Some(len) = resp.content_length()
            && len > self.max_bytes
        {
            return Err(fetch_err(
                url,
                format!(
                    "response of {len} bytes is over the {} byte limit",
                    self.max_bytes
                ),
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| request_err(url, &e))? {
            if (body.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(fetch_err(
                    url,
                    format!("response is over the {} byte limit", self.max_bytes),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            url: url.clone(),
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body,
        })
    }

    /// The host's robots.txt rules (cached). An address the request may not
    /// reach is an error (not "closed"), so the refusal says why.
    async fn robots_for(&self, url: &Url, reach: Reach) -> Result<Robots, IngestError> {
        let key = authority(url);
        {
            let cache = self.robots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, r)) = cache.get(&key)
                && at.elapsed() < self.robots_ttl
            {
                return Ok(r.clone());
            }
        }
        let mut robots_url = url.clone();
        robots_url.set_path("/robots.txt");
        robots_url.set_query(None);
        robots_url.set_fragment(None);
        let robots = match self.send(&robots_url, HeaderMap::new(), reach).await {
            Ok(r) if (200..300).contains(&r.status) => {
                let end = r.body.len().min(MAX_ROBOTS_BYTES as usize);
                Robots::parse(&String::from_utf8_lossy(&r.body[..end]), &self.user_agent)
            }
            Ok(r) if (400..500).contains(&r.status) => Robots::allow_all(),
            // Not cached: the next request asks again. The host is not
            // fetched meanwhile, and the error says why (not "disallowed":
            // nothing was disallowed, the rules could not be read).
            Ok(r) => {
                return Err(fetch_err(
                    &robots_url,
                    format!(
                        "robots.txt unreachable (HTTP status {}); the host is not fetched until it can be read",
                        r.status
                    ),
                ));
            }
            Err(e @ IngestError::PrivateAddress { .. }) => return Err(e),
            Err(e) => {
                return Err(fetch_err(
                    &robots_url,
                    format!(
                        "robots.txt unreachable ({}); the host is not fetched until it can be read",
                        error_text(&e)
                    ),
                ));
            }
        };
        let mut cache = self.robots.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(key, (Instant::now(), robots.clone()));
        Ok(robots)
    }

    /// A GET under every rule: host in `allow`, public addresses only unless
    /// `reach` allows private ones, robots.txt, pacing, size and time limits;
    /// conditional when `conditional` and validators are known. Every
    /// redirect hop meets the same rules.
    pub async fn get(
        &self,
        url: &Url,
        allow: &[String],
        conditional: bool,
        reach: Reach,
    ) -> Result<Fetched, IngestError> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            if !host_allowed(&current, allow) {
                return Err(fetch_err(
                    &current,
                    format!(
                        "host not in the allow list ({}); add it to the source's allowed hosts",
                        allow.join(", ")
                    ),
                ));
            }
            let path = match current.query() {
                Some(q) => format!("{}?{q}", current.path()),
                None => current.path().to_string(),
            };
            if reach == Reach::Public {
                netguard::check_literal(&current).map_err(|np| refused(&current, &np))?;
            }
            if !self.robots_for(&current, reach).await?.allowed(&path) {
                return Err(fetch_err(&current, "disallowed by the host's robots.txt"));
            }
            let mut headers = HeaderMap::new();
            if conditional && let Some(v) = self.validators(&current)? {
                if let Some(Ok(etag)) = v.etag.as_deref().map(HeaderValue::from_str) {
                    headers.insert(header::IF_NONE_MATCH, etag);
                }
                if let Some(Ok(lm)) = v.last_modified.as_deref().map(HeaderValue::from_str) {
                    headers.insert(header::IF_MODIFIED_SINCE, lm);
                }
            }
            let resp = self.send(&current, headers, reach).await?;
            match resp.status {
                304 => return Ok(Fetched::NotModified),
                200..=299 => return Ok(Fetched::Body(Box::new(resp))),
                301 | 302 | 303 | 307 | 308 => {
                    let next = resp
                        .header(header::LOCATION.as_str())
                        .and_then(|l| current.join(l).ok())
                        .ok_or_else(|| fetch_err(&current, "redirect without a usable Location"))?;
                    current = next;
                }
                status => {
                    return Err(fetch_err(&current, format!("HTTP status {status}")));
                }
            }
        }
        Err(fetch_err(
            url,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    fn validators(&self, url: &Url) -> Result<Option<Validators>, IngestError> {
        Ok(self
            .store
            .get(TREE, &http_key(url))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Remembers the validators of a response once what it carried is stored.
    pub fn remember(&self, requested: &Url, resp: &Response) -> Result<(), IngestError> {
        let v = Validators {
            etag: resp.header(header::ETAG.as_str()).map(str::to_string),
            last_modified: resp
                .header(header::LAST_MODIFIED.as_str())
                .map(str::to_string),
        };
        if v.etag.is_none() && v.last_modified.is_none() {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&v).map_err(|e| IngestError::Config(e.to_string()))?;
        self.store.put(TREE, &http_key(requested), &bytes)?;
        Ok(())
    }
}

fn refused(url: &Url, np: &netguard::NotPublic) -> IngestError {
    // The caller logs the error (the runner, or the listing's "page skipped").
    tracing::debug!(%url, reason = %np, "fetch refused: not a public address");
    IngestError::PrivateAddress {
        url: url.to_string(),
        message: np.to_string(),
    }
}

/// A failed request: refused by the resolver ([`IngestError::PrivateAddress`])
/// or a fetch error saying what happened.
fn request_err(url: &Url, e: &reqwest::Error) -> IngestError {
    match netguard::not_public_in(e) {
        Some(np) => refused(url, np),
        None => fetch_err(url, describe(e)),
    }
}

/// A reqwest error with its kind spelled out (timeouts say so) and its causes.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        format!("timed out ({e})")
    } else if e.is_connect() {
        format!("could not connect ({e})")
    } else {
        e.to_string()
    };
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
