//! `WebFetch` and `WebSearch`.
//!
//! `WebFetch` {url, prompt?} asks the ingest service on `ingest.fetch`, which
//! fetches under its rules (allow-listed hosts, robots.txt, public addresses
//! only unless allowed, size and time limits) and answers the page as text;
//! a refusal is the tool's error, so the model sees why.
//!
//! `WebSearch` {query} calls the search API configured in
//! `agents.tools.web_search` when there is one. The wire format is the Brave
//! Search API's: `GET {url}?q=<query>&count=<n>` with the key (read from
//! `api_key_env` when the tool is built) in the `header` header
//! (`X-Subscription-Token` by default) and `Accept: application/json`; the
//! answer's `web.results[]` `{title, url, description}` are handed back.
//! Without it, the content library answers (`library.search`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use concierto_bus::Bus;
use concierto_core::config::{WebFetchSettings, WebSearchSettings};
use concierto_core::subjects;
use concierto_proto::v1;
use serde::Deserialize;
use serde_json::{Value, json};

use super::args::{self, schema};
use super::studio::{BusHandle, ask, search_library, snippet};
use super::{Tool, ToolCx, ToolError, ToolSpec};

/// Longest URL `WebFetch` takes.
const MAX_URL_BYTES: usize = 4096;
/// Longest search query.
pub const MAX_QUERY_BYTES: usize = 400;
/// Results a search answers.
pub const SEARCH_RESULTS: usize = 10;
/// Largest search API answer read (1 MiB).
pub const MAX_SEARCH_BYTES: usize = 1 << 20;
/// Time for one search API request.
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(15);

/// `WebFetch` {url, prompt?}.
#[derive(Debug, Clone)]
pub struct WebFetchTool {
    bus: BusHandle,
    timeout: Duration,
}

impl WebFetchTool {
    /// Asking the ingester over `bus`; waits the fetch's own time limit plus 5 s.
    pub fn new(bus: Arc<dyn Bus>, settings: &WebFetchSettings) -> Self {
        WebFetchTool {
            bus: BusHandle(bus),
            timeout: settings.timeout + Duration::from_secs(5),
        }
    }
}

#[async_trait]
impl Tool for WebFetchTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "WebFetch".into(),
            description: "Fetch a web page (allow-listed hosts only, robots.txt honoured) and \
                          read it as text."
                .into(),
            input_schema: schema(
                &[
                    ("url", "string", "The http(s) URL."),
                    ("prompt", "string", "What you want from the page."),
                ],
                &["url"],
            ),
        }
    }

    async fn call(&self, args: Value, cx: &ToolCx) -> Result<String, ToolError> {
        let m = args::object(&args)?;
        let req = v1::WebFetchRequest {
            url: args::text(m, "url", MAX_URL_BYTES)?.to_string(),
            prompt: args::opt_text(m, "prompt", 2000)?
                .unwrap_or_default()
                .to_string(),
            role: cx.task.role.clone(),
        };
        let r: v1::WebFetchResponse = ask(
            self.bus.0.as_ref(),
            "web fetcher (ingest service)",
            subjects::INGEST_FETCH,
            &req,
            self.timeout,
        )
        .await?;
        let mut out = format!("URL: {}\nStatus: {}\n", r.url, r.status);
        if !r.title.is_empty() {
            out.push_str(&format!("Title: {}\n", r.title));
        }
        out.push('\n');
        out.push_str(&r.text);
        if r.truncated {
            out.push_str("\n[the page's text was cut at the fetch limit]");
        }
        Ok(out)
    }
}

/// Where `WebSearch` looks.
#[derive(Debug, Clone)]
enum Provider {
    /// A Brave-compatible search API; the key read when built (`Err`: why there is none).
    Http {
        settings: WebSearchSettings,
        /// The client and key, or why there are none.
        ready: Result<(reqwest::Client, String), String>,
    },
    /// The content library.
    Library,
}

/// `WebSearch` {query}.
#[derive(Debug, Clone)]
pub struct WebSearchTool {
    bus: BusHandle,
    provider: Provider,
}

#[derive(Deserialize)]
struct BraveAnswer {
    #[serde(default)]
    web: Option<BraveWeb>,
}

#[derive(Deserialize)]
struct BraveWeb {
    #[serde(default)]
    results: Vec<BraveResult>,
}

#[derive(Deserialize)]
struct BraveResult {
    #[serde(default)]
    title: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    description: String,
}

impl WebSearchTool {
    /// With the configured search API (its key read now from the
    /// environment), else the content library over `bus`.
    pub fn new(bus: Arc<dyn Bus>, settings: Option<&WebSearchSettings>) -> Self {
        Self::with_env(bus, settings, |k| std::env::var(k).ok())
    }

    /// As [`WebSearchTool::new`], reading the key with `env`.
    pub fn with_env(
        bus: Arc<dyn Bus>,
        settings: Option<&WebSearchSettings>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let provider = match settings {
            None => Provider::Library,
            Some(s) => {
                let key = env(&s.api_key_env)
                    .filter(|k| !k.trim().is_empty())
                    .ok_or_else(|| {
                        format!(
                            "web search is not available: the environment variable {} is not set",
                            s.api_key_env
                        )
                    });
                let client = reqwest::Client::builder()
                    .timeout(SEARCH_TIMEOUT)
                    .connect_timeout(SEARCH_TIMEOUT)
                    .user_agent(concat!("concierto/", env!("CARGO_PKG_VERSION")))
                    .build();
                let ready = match client {
                    Ok(c) => key.map(|k| (c, k)),
                    Err(e) => Err(format!("web search is not available: HTTP client: {e}")),
                };
                Provider::Http {
                    settings: s.clone(),
                    ready,
                }
            }
        };
        WebSearchTool {
            bus: BusHandle(bus),
            provider,
        }
    }

    async fn http(
        client: &reqwest::Client,
        s: &WebSearchSettings,
        key: &str,
        query: &str,
    ) -> Result<String, ToolError> {
        let count = SEARCH_RESULTS.to_string();
        let mut resp = client
            .get(&s.url)
            .query(&[("q", query), ("count", count.as_str())])
            .header(s.header.as_str(), key)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                ToolError::new(format!(
                    "the search API did not answer{}",
                    if e.is_timeout() { " in time" } else { "" }
                ))
            })?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|_| ToolError::new("the search API's answer broke off"))?
        {
            if body.len() + chunk.len() > MAX_SEARCH_BYTES {
                return Err(ToolError::new(format!(
                    "the search API answered more than {MAX_SEARCH_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(ToolError::new(format!(
                "the search API answered HTTP {}: {}",
                status.as_u16(),
                snippet(&String::from_utf8_lossy(&body), 200)
            )));
        }
        let a: BraveAnswer = serde_json::from_slice(&body).map_err(|e| {
            ToolError::new(format!(
                "the search API's answer is not the expected JSON: {e}"
            ))
        })?;
        let results: Vec<Value> = a
            .web
            .map(|w| w.results)
            .unwrap_or_default()
            .into_iter()
            .take(SEARCH_RESULTS)
            .map(|r| {
                json!({
                    "title": snippet(&r.title, 200),
                    "url": snippet(&r.url, 500),
                    "description": snippet(&r.description, 400),
                })
            })
            .collect();
        Ok(json!({ "source": "web", "count": results.len(), "results": results }).to_string())
    }
}

#[async_trait]
impl Tool for WebSearchTool {
    fn spec(&self) -> ToolSpec {
        let description = match &self.provider {
            Provider::Http { .. } => {
                "Search the web: titles, URLs and descriptions of the top results."
            }
            Provider::Library => {
                "Search for material: no web search is configured, so this searches the studio's \
                 content library (ingested inspiration, posts, pages)."
            }
        };
        ToolSpec {
            name: "WebSearch".into(),
            description: description.into(),
            input_schema: schema(&[("query", "string", "What to search for.")], &["query"]),
        }
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        let m = args::object(&args)?;
        let query = args::text(m, "query", MAX_QUERY_BYTES)?.trim();
        if query.is_empty() {
            return Err(ToolError::new("`query` is empty"));
        }
        match &self.provider {
            Provider::Http { settings, ready } => {
                let (client, key) = ready.as_ref().map_err(|e| ToolError::new(e.clone()))?;
                Self::http(client, settings, key, query).await
            }
            Provider::Library => {
                let items = search_library(
                    self.bus.0.as_ref(),
                    query,
                    None,
                    Vec::new(),
                    SEARCH_RESULTS as u32,
                )
                .await?;
                Ok(json!({
                    "source": "content library (no web search is configured)",
                    "count": items.len(),
                    "results": items,
                })
                .to_string())
            }
        }
    }
}
