//! `agents.mcp_servers`: MCP servers whose tools roles may use, named in a
//! role's `tools:` line as `mcp__<server>__<tool>` (or `mcp__<server>` for
//! every tool of the server), as Claude Code names them.
//!
//! ```yaml
//! agents:
//!   mcp_servers:
//!     files:                                   # a child process speaking MCP on stdio
//!       command: [npx, -y, "@modelcontextprotocol/server-filesystem", ./content]
//!       env: { LOG_LEVEL: warn, API_TOKEN: "${FILES_TOKEN}" }
//!     search:
//!       command: uvx                           # or `command` + `args`
//!       args: [mcp-server-fetch]
//!     tracker:                                 # a streamable HTTP server
//!       url: http://localhost:8931/mcp
//!       timeout: 20 seconds                    # per tool call (default 30 seconds)
//! ```
//!
//! Rules: a name is `[a-z0-9_-]+` without `__` (the separator of tool names);
//! exactly one of `command` and `url`; `command` is a non-empty text or list
//! (its first item the program, the rest arguments, before `args`); `url` is
//! `http://` or `https://`; `env` (command servers only) maps variable names
//! (`[A-Za-z_][A-Za-z0-9_]*`) to text, where a value that is exactly
//! `${NAME}` is read from the agent's environment when the server starts (an
//! unset variable then fails the start, naming it). No other `$` expansion is
//! done: a value holding `${` anywhere else is an error. A server's child
//! process gets only the variables in `env` plus `PATH` and `HOME`.
//! `timeout` (1 second to 10 minutes) bounds each tool call.

use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use super::spans::child;
use super::walk::Walker;

/// Default bound of one MCP tool call.
pub const DEFAULT_MCP_TIMEOUT: Duration = Duration::from_secs(30);

/// One MCP server (`agents.mcp_servers.<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct McpServerDef {
    /// Its name, the `<server>` of `mcp__<server>__<tool>`.
    pub name: String,
    /// How to reach it.
    pub transport: McpTransport,
    /// Variables for a command server: literal text or a whole `${NAME}`
    /// reference (see [`resolve_env_value`]).
    pub env: IndexMap<String, String>,
    /// Bound of one tool call.
    pub timeout: Duration,
}

/// How an MCP server is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum McpTransport {
    /// A child process speaking MCP on stdin/stdout.
    Command {
        /// The program.
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// A streamable HTTP endpoint.
    Url(String),
}

/// `value` with a whole `${NAME}` reference replaced by `lookup(NAME)`;
/// other text as it is. An unset variable is an error naming it.
pub fn resolve_env_value(
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    match env_reference(value) {
        Some(var) => lookup(var).ok_or_else(|| format!("environment variable {var} is not set")),
        None => Ok(value.to_string()),
    }
}

/// `NAME` when `value` is exactly `${NAME}`.
fn env_reference(value: &str) -> Option<&str> {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .filter(|v| valid_var(v))
}

fn valid_var(v: &str) -> bool {
    let mut chars = v.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True for a valid server name: `[a-z0-9_-]+` without `__`.
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

const KEYS: &[&str] = &["command", "args", "env", "url", "timeout"];

/// Reads `agents.mcp_servers` at `path`.
pub(super) fn mcp_servers(
    w: &mut Walker<'_>,
    v: Option<&Value>,
    path: &str,
) -> IndexMap<String, McpServerDef> {
    let mut out = IndexMap::new();
    let Some(m) = w.map(v, path) else {
        return out;
    };
    for (name, v) in m {
        let p = child(path, name);
        if !valid_server_name(name) {
            w.error(
                &p,
                format!(
                    "bad MCP server name {name:?}: use lowercase letters, digits, `_` and `-` \
                     (no `__`, which separates mcp__<server>__<tool>)"
                ),
            );
            continue;
        }
        let Some(s) = w.map(Some(v), &p) else {
            if v.is_null() {
                w.error(&p, "needs `command` or `url`");
            }
            continue;
        };
        w.known_keys(s, &p, KEYS);
        let command = w.strings(s, "command", &p, false);
        let args = w.strings(s, "args", &p, false);
        let url = w.opt_string(s, "url", &p);
        let timeout = w.duration(s, "timeout", &p, DEFAULT_MCP_TIMEOUT);
        if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(600) {
            w.error(
                &child(&p, "timeout"),
                "must be between 1 second and 10 minutes",
            );
        }
        let mut env = IndexMap::new();
        if let Some(e) = w.map(s.get("env"), &child(&p, "env")) {
            let ep = child(&p, "env");
            for (k, v) in e {
                let kp = child(&ep, k);
                if !valid_var(k) {
                    w.error(&kp, format!("bad variable name {k:?}"));
                    continue;
                }
                let text = match v {
                    Value::String(t) => t.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        w.error(&kp, "must be text");
                        continue;
                    }
                };
                if text.contains("${") && env_reference(&text).is_none() {
                    w.error(
                        &kp,
                        "only a whole-value reference `${NAME}` to an environment variable is \
                         supported",
                    );
                    continue;
                }
                env.insert(k.clone(), text);
            }
        }
        let transport = match (command.split_first(), url) {
            (Some(_), Some(_)) => {
                w.error(&p, "set exactly one of `command` and `url`, not both");
                continue;
            }
            (None, None) => {
                w.error(&p, "needs `command` (a program to start) or `url`");
                continue;
            }
            (Some((program, first)), None) => {
                if program.trim().is_empty() {
                    w.error(&child(&p, "command"), "must name a program");
                    continue;
                }
                let mut all = first.to_vec();
                all.extend(args);
                McpTransport::Command {
                    program: program.clone(),
                    args: all,
                }
            }
            (None, Some(url)) => {
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                    w.error(
                        &child(&p, "url"),
                        format!("must be an http:// or https:// URL, found {url:?}"),
                    );
                    continue;
                }
                if !args.is_empty() || !env.is_empty() {
                    w.error(&p, "`args` and `env` apply to a `command` server only");
                }
                McpTransport::Url(url)
            }
        };
        out.insert(
            name.clone(),
            McpServerDef {
                name: name.clone(),
                transport,
                env,
                timeout,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_text_or_a_whole_reference() {
        let lookup = |v: &str| (v == "TOKEN").then(|| "s3cret".to_string());
        assert_eq!(resolve_env_value("warn", lookup).as_deref(), Ok("warn"));
        assert_eq!(
            resolve_env_value("${TOKEN}", lookup).as_deref(),
            Ok("s3cret")
        );
        assert_eq!(
            resolve_env_value("${MISSING}", lookup),
            Err("environment variable MISSING is not set".to_string())
        );
    }

    #[test]
    fn server_names_are_checked() {
        assert!(valid_server_name("files-2_x"));
        for bad in ["", "Files", "a__b", "a b", "a.b"] {
            assert!(!valid_server_name(bad), "{bad:?}");
        }
    }
}
