//! `agents.tools`: the limits of a model's tool loop and the settings of the
//! built-in tools that reach outside the studio.
//!
//! ```yaml
//! agents:
//!   tools:
//!     max_calls: 16              # tool calls allowed in one task
//!     max_answer_bytes: 32768    # bytes of one tool answer handed to the model
//!     web_fetch:                 # WebFetch, answered by the ingester (`ingest.fetch`)
//!       allow_hosts: [developer.mozilla.org]   # besides the web sources' hosts
//!       allow_private_networks: false          # loopback, private, link-local
//!       max_bytes: 2097152       # largest page read (default 2 MiB)
//!       max_text_bytes: 65536    # page text handed back (default 64 KiB)
//!       timeout: 20 seconds
//!     web_search:                # WebSearch; without it the content library answers
//!       url: https://api.search.brave.com/res/v1/web/search
//!       api_key_env: BRAVE_API_KEY
//!       header: X-Subscription-Token           # the default
//! ```
//!
//! A role gets only the tools its role file's `tools:` line names (a role
//! without that line gets none). Names that are not tools Concierto knows
//! ([`KNOWN_TOOLS`], or `mcp__<server>__<tool>`) are a warning.

use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::problem::Problem;
use super::spans::child;
use super::walk::Walker;
use crate::roles::RoleDef;

/// The built-in tools a role's `tools:` line may name.
pub const KNOWN_TOOLS: &[&str] = &[
    "Read",
    "Grep",
    "Glob",
    "WebFetch",
    "WebSearch",
    "Write",
    "Edit",
    "library_search",
    "metrics_get",
    "runs_recent",
    "brand_check",
];

/// Tool calls allowed in one task unless `max_calls` says otherwise.
pub const DEFAULT_MAX_CALLS: u32 = 16;
/// Bytes of one tool answer handed to the model unless `max_answer_bytes` says otherwise.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 32 * 1024;
/// Most tool calls `max_calls` may allow.
pub const MAX_MAX_CALLS: u64 = 1000;
/// Most bytes `max_answer_bytes` may allow (1 MiB).
pub const MAX_MAX_ANSWER_BYTES: u64 = 1 << 20;

/// `agents.tools`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolsSettings {
    /// `max_calls`: tool calls allowed in one task (1..=1000, default 16).
    pub max_calls: u32,
    /// `max_answer_bytes`: bytes of one tool answer handed to the model (the
    /// rest is cut and the cut said; 256..=1 MiB, default 32 KiB).
    pub max_answer_bytes: usize,
    /// `web_fetch`.
    pub web_fetch: WebFetchSettings,
    /// `web_search`; `None`: `WebSearch` searches the content library.
    pub web_search: Option<WebSearchSettings>,
}

impl Default for ToolsSettings {
    fn default() -> Self {
        ToolsSettings {
            max_calls: DEFAULT_MAX_CALLS,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            web_fetch: WebFetchSettings::default(),
            web_search: None,
        }
    }
}

/// `agents.tools.web_fetch`: what `WebFetch` may reach, enforced by the
/// ingester that answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebFetchSettings {
    /// `allow_hosts`: hosts fetchable besides those of the studio's web
    /// sources and their `allow_hosts` (lowercase).
    pub allow_hosts: Vec<String>,
    /// `allow_private_networks`: fetches may reach loopback, private and
    /// other non-public addresses (default false).
    pub allow_private_networks: bool,
    /// `max_bytes`: largest response read (default 2 MiB, at most 10 MiB).
    pub max_bytes: u64,
    /// `max_text_bytes`: most bytes of page text answered (default 64 KiB).
    pub max_text_bytes: usize,
    /// `timeout`: time for one fetch, robots.txt and redirects included (default 20 s).
    pub timeout: Duration,
}

impl Default for WebFetchSettings {
    fn default() -> Self {
        WebFetchSettings {
            allow_hosts: Vec::new(),
            allow_private_networks: false,
            max_bytes: 2 << 20,
            max_text_bytes: 64 * 1024,
            timeout: Duration::from_secs(20),
        }
    }
}

/// `agents.tools.web_search`: an HTTP search API speaking the Brave Search
/// API's format (`GET {url}?q=<query>&count=<n>` with the key in `header`;
/// answer `{"web": {"results": [{"title", "url", "description"}]}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebSearchSettings {
    /// `url`: the search endpoint.
    pub url: String,
    /// `api_key_env`: the environment variable holding the key.
    pub api_key_env: String,
    /// `header`: the header carrying the key (default `X-Subscription-Token`).
    pub header: String,
}

const KEYS: &[&str] = &["max_calls", "max_answer_bytes", "web_fetch", "web_search"];
const FETCH_KEYS: &[&str] = &[
    "allow_hosts",
    "allow_private_networks",
    "max_bytes",
    "max_text_bytes",
    "timeout",
];
const SEARCH_KEYS: &[&str] = &["url", "api_key_env", "header"];

/// Reads `agents.tools` (`v`, at key path `path`).
pub(super) fn tools(w: &mut Walker<'_>, v: Option<&Value>, path: &str) -> ToolsSettings {
    let mut out = ToolsSettings::default();
    let Some(m) = w.map(v, path) else {
        return out;
    };
    w.known_keys(m, path, KEYS);
    out.max_calls = bounded(
        w,
        m,
        "max_calls",
        path,
        1,
        MAX_MAX_CALLS,
        u64::from(DEFAULT_MAX_CALLS),
    ) as u32;
    out.max_answer_bytes = bounded(
        w,
        m,
        "max_answer_bytes",
        path,
        256,
        MAX_MAX_ANSWER_BYTES,
        DEFAULT_MAX_ANSWER_BYTES as u64,
    ) as usize;
    let fp = child(path, "web_fetch");
    if let Some(f) = w.map(m.get("web_fetch"), &fp) {
        w.known_keys(f, &fp, FETCH_KEYS);
        let d = WebFetchSettings::default();
        out.web_fetch = WebFetchSettings {
            allow_hosts: w
                .strings(f, "allow_hosts", &fp, false)
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            allow_private_networks: match f.get("allow_private_networks") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
                Some(_) => {
                    w.error(
                        &child(&fp, "allow_private_networks"),
                        "must be true or false",
                    );
                    false
                }
            },
            max_bytes: bounded(w, f, "max_bytes", &fp, 1024, 10 << 20, d.max_bytes),
            max_text_bytes: bounded(
                w,
                f,
                "max_text_bytes",
                &fp,
                256,
                1 << 20,
                d.max_text_bytes as u64,
            ) as usize,
            timeout: w.duration(f, "timeout", &fp, d.timeout),
        };
        if out.web_fetch.timeout.is_zero() || out.web_fetch.timeout > Duration::from_secs(300) {
            w.error(
                &child(&fp, "timeout"),
                "must be more than 0 and at most 5 minutes",
            );
            out.web_fetch.timeout = d.timeout;
        }
    }
    let sp = child(path, "web_search");
    if let Some(s) = w.map(m.get("web_search"), &sp) {
        w.known_keys(s, &sp, SEARCH_KEYS);
        let url = w.string(s, "url", &sp);
        let key = w.string(s, "api_key_env", &sp);
        if let Some(u) = &url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            w.error(&child(&sp, "url"), "must be an http:// or https:// URL");
        }
        let header = w
            .opt_string(s, "header", &sp)
            .unwrap_or_else(|| "X-Subscription-Token".into());
        if let (Some(url), Some(api_key_env)) = (url, key) {
            out.web_search = Some(WebSearchSettings {
                url,
                api_key_env,
                header,
            });
        }
    }
    out
}

/// A whole number in `min..=max`, or `default` when absent (an error when out of range).
fn bounded(
    w: &mut Walker<'_>,
    m: &Map<String, Value>,
    key: &str,
    path: &str,
    min: u64,
    max: u64,
    default: u64,
) -> u64 {
    let n = w.count(m, key, path, default);
    if !(min..=max).contains(&n) {
        w.error(
            &child(path, key),
            format!("must be between {min} and {max}, found {n}"),
        );
        return default;
    }
    n
}

/// Whether `name` names an MCP tool (`mcp__<server>__<tool>`); its server.
pub fn mcp_server_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("mcp__")?;
    let (server, tool) = rest.split_once("__")?;
    (!server.is_empty() && !tool.is_empty()).then_some(server)
}

/// Warns about names in the roles' `tools:` lines that are not tools:
/// neither in [`KNOWN_TOOLS`] nor `mcp__<server>__<tool>` with `<server>` one
/// of `mcp_servers` (any server when `mcp_servers` is `None`).
pub(super) fn check_role_tools(
    problems: &mut Vec<Problem>,
    roles: &IndexMap<String, RoleDef>,
    mcp_servers: Option<&[String]>,
) {
    for role in roles.values() {
        for name in &role.tools {
            if KNOWN_TOOLS.contains(&name.as_str()) {
                continue;
            }
            let message = match (mcp_server_of(name), mcp_servers) {
                (Some(_), None) => continue,
                (Some(server), Some(known)) if known.iter().any(|k| k == server) => continue,
                (Some(server), Some(known)) => format!(
                    "tool {name:?} names the MCP server {server:?}, which agents.mcp_servers does not declare ({}); the role will not get it",
                    if known.is_empty() {
                        "none declared".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
                (None, _) => format!(
                    "unknown tool {name:?}; the role will not get it. Known tools: {}, and mcp__<server>__<tool> for a server in agents.mcp_servers",
                    KNOWN_TOOLS.join(", ")
                ),
            };
            problems.push(Problem::warning(
                &role.file,
                Some(role.line),
                "tools",
                message,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Severity, check_with_env};

    fn check(agents: &str) -> crate::config::Checked {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("agents")).unwrap();
        let path = dir.path().join("concierto.yaml");
        std::fs::write(&path, format!("studio: {{ name: T }}\nagents:\n{agents}")).unwrap();
        check_with_env(&path, Vec::<(String, String)>::new())
    }

    #[test]
    fn tools_settings_are_read_with_defaults() {
        let c = check("  paths: [agents]\n");
        assert_eq!(c.studio.unwrap().agents.tools, ToolsSettings::default());
        let c = check(
            "  paths: [agents]\n  tools:\n    max_calls: 4\n    max_answer_bytes: 1024\n    web_fetch: { allow_hosts: [Example.COM], allow_private_networks: true, max_bytes: 4096, max_text_bytes: 512, timeout: 3 seconds }\n    web_search: { url: \"https://api.search.brave.com/res/v1/web/search\", api_key_env: BRAVE_KEY }\n",
        );
        let t = c.studio.expect("loads").agents.tools;
        assert_eq!((t.max_calls, t.max_answer_bytes), (4, 1024));
        assert_eq!(t.web_fetch.allow_hosts, ["example.com"]);
        assert!(t.web_fetch.allow_private_networks);
        assert_eq!(
            (t.web_fetch.max_bytes, t.web_fetch.max_text_bytes),
            (4096, 512)
        );
        assert_eq!(t.web_fetch.timeout, Duration::from_secs(3));
        let s = t.web_search.unwrap();
        assert_eq!(
            (s.api_key_env.as_str(), s.header.as_str()),
            ("BRAVE_KEY", "X-Subscription-Token")
        );
    }

    #[test]
    fn bad_tools_settings_are_errors_naming_the_key() {
        let c = check(
            "  tools:\n    max_calls: 0\n    max_answer_bytes: 99999999\n    web_fetch: { timeout: 0 seconds, colour: red }\n    web_search: { url: ftp://x }\n",
        );
        assert!(c.studio.is_none());
        let keys: Vec<(&str, Severity)> = c
            .problems
            .iter()
            .map(|p| (p.key.as_str(), p.severity))
            .collect();
        for k in [
            "agents.tools.max_calls",
            "agents.tools.max_answer_bytes",
            "agents.tools.web_fetch.timeout",
            "agents.tools.web_fetch.colour",
            "agents.tools.web_search",
            "agents.tools.web_search.url",
        ] {
            assert!(keys.contains(&(k, Severity::Error)), "{k}: {keys:?}");
        }
    }

    #[test]
    fn mcp_names_are_split() {
        assert_eq!(mcp_server_of("mcp__files__read_file"), Some("files"));
        assert_eq!(mcp_server_of("mcp__files"), None);
        assert_eq!(mcp_server_of("mcp____x"), None);
        assert_eq!(mcp_server_of("Read"), None);
    }
}
