//! Tools of MCP servers (`agents.mcp_servers`), through the official Rust SDK
//! (`rmcp`).
//!
//! A role names them in its `tools:` line as `mcp__<server>__<tool>`, or
//! `mcp__<server>` for every tool of that server (as Claude Code does).
//! [`mcp_tools`] connects once to each server named, lists its tools and
//! gives one [`Tool`] per tool wanted; the tools of a server share that one
//! connection. A `command` server is a child process (MCP over stdio, started
//! in the studio's folder with only `PATH`, `HOME` and its `env`, its stderr
//! discarded) killed when the last of its tools is dropped; a `url` server is
//! spoken to over streamable HTTP.
//!
//! A server that died (its process exited, its connection closed) is started
//! again on the next call, once; if it dies again its tools answer an error
//! ("MCP server X stopped and was restarted once already").
//!
//! Bounds: starting and listing take at most the server's `timeout`; a
//! server may list at most [`MAX_MCP_TOOLS`] tools over at most
//! [`MAX_LIST_PAGES`] pages; each call takes at most `timeout`; an answer's
//! text is cut at [`MAX_MCP_ANSWER_BYTES`] (the tool loop cuts it further to
//! the toolbox's `max_answer_bytes`). Images in an answer are given as
//! `[image: <type>, <n> bytes base64]`.

use std::sync::Arc;

use async_trait::async_trait;
use concierto_core::config::{McpServerDef, McpTransport, Studio, mcp::resolve_env_value};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, PaginatedRequestParams};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::AgentError;
use crate::tools::tool_loop::cut;
use crate::tools::{Tool, ToolCx, ToolError, ToolSpec};

/// Most tools one MCP server may list.
pub const MAX_MCP_TOOLS: usize = 256;
/// Most pages of `tools/list` read from one server.
pub const MAX_LIST_PAGES: usize = 16;
/// Most bytes of an MCP tool's answer kept.
pub const MAX_MCP_ANSWER_BYTES: usize = 1024 * 1024;

/// The prefix of MCP tool names.
pub const MCP_PREFIX: &str = "mcp__";

/// The tools named in `wanted` that are MCP tools (`mcp__<server>__<tool>`,
/// or `mcp__<server>` for all of a server's tools), connected. Names without
/// the `mcp__` prefix are skipped (they are other tools). A server the studio
/// does not declare, one that cannot be started or listed, or a tool it does
/// not list is an error naming it.
pub async fn mcp_tools(
    studio: &Studio,
    wanted: &[String],
) -> Result<Vec<Arc<dyn Tool>>, AgentError> {
    // server → None (all its tools) or the tools named, in order.
    let mut plan: Vec<(String, Option<Vec<String>>)> = Vec::new();
    for name in wanted {
        let Some(rest) = name.strip_prefix(MCP_PREFIX) else {
            continue;
        };
        let (server, tool) = match rest.split_once("__") {
            Some((s, t)) if !t.is_empty() => (s, Some(t)),
            Some((s, _)) => (s, None),
            None => (rest, None),
        };
        let entry = match plan.iter_mut().find(|(s, _)| s == server) {
            Some(e) => e,
            None => {
                plan.push((server.to_string(), Some(Vec::new())));
                plan.last_mut()
                    .ok_or_else(|| mcp_error(server, "internal"))?
            }
        };
        match (tool, &mut entry.1) {
            (None, all) => *all = None,
            (Some(t), Some(list)) if !list.iter().any(|x| x == t) => list.push(t.to_string()),
            _ => {}
        }
    }
    let mut out: Vec<Arc<dyn Tool>> = Vec::new();
    for (server, tools) in plan {
        let Some(def) = studio.agents.mcp_servers.get(&server) else {
            let known: Vec<&str> = studio
                .agents
                .mcp_servers
                .keys()
                .map(String::as_str)
                .collect();
            return Err(mcp_error(
                &server,
                &format!(
                    "agents.mcp_servers does not declare it (declared: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        let conn = Arc::new(Connection::start(def.clone(), studio.base_dir.clone()).await?);
        let listed = conn.list().await?;
        match tools {
            None => {
                for spec in listed {
                    out.push(Arc::new(McpTool::new(conn.clone(), spec)));
                }
            }
            Some(names) => {
                for name in names {
                    let Some(spec) = listed.iter().find(|s| s.name == name) else {
                        return Err(mcp_error(
                            &server,
                            &format!(
                                "it has no tool {name:?} (it lists: {})",
                                listed
                                    .iter()
                                    .map(|s| s.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    };
                    out.push(Arc::new(McpTool::new(conn.clone(), spec.clone())));
                }
            }
        }
    }
    Ok(out)
}

fn mcp_error(server: &str, why: &str) -> AgentError {
    AgentError::Mcp {
        server: server.to_string(),
        why: why.to_string(),
    }
}

/// A tool as the server lists it.
#[derive(Debug, Clone)]
struct Listed {
    name: String,
    description: String,
    schema: Value,
}

type Client = RunningService<RoleClient, ()>;

/// One server's connection, shared by its tools.
struct Connection {
    def: McpServerDef,
    base_dir: std::path::PathBuf,
    state: Mutex<State>,
}

struct State {
    client: Option<Client>,
    restarted: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.def.name)
            .finish_non_exhaustive()
    }
}

impl Connection {
    async fn start(def: McpServerDef, base_dir: std::path::PathBuf) -> Result<Self, AgentError> {
        let client = connect(&def, &base_dir).await?;
        Ok(Connection {
            def,
            base_dir,
            state: Mutex::new(State {
                client: Some(client),
                restarted: false,
            }),
        })
    }

    /// The server's tools, bounded in count and pages.
    async fn list(&self) -> Result<Vec<Listed>, AgentError> {
        let server = &self.def.name;
        let state = self.state.lock().await;
        let Some(client) = state.client.as_ref() else {
            return Err(mcp_error(server, "not connected"));
        };
        let listing = async {
            let mut tools = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..MAX_LIST_PAGES {
                let params = PaginatedRequestParams::default().with_cursor(cursor.take());
                let page = client
                    .peer()
                    .list_tools(Some(params))
                    .await
                    .map_err(|e| mcp_error(server, &format!("tools/list failed: {e}")))?;
                for t in page.tools {
                    if tools.len() >= MAX_MCP_TOOLS {
                        return Err(mcp_error(
                            server,
                            &format!("it lists more than {MAX_MCP_TOOLS} tools"),
                        ));
                    }
                    tools.push(Listed {
                        name: t.name.to_string(),
                        description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                        schema: Value::Object((*t.input_schema).clone()),
                    });
                }
                match page.next_cursor {
                    Some(c) if !c.is_empty() => cursor = Some(c),
                    _ => return Ok(tools),
                }
            }
            Err(mcp_error(
                server,
                &format!("its tool list runs past {MAX_LIST_PAGES} pages"),
            ))
        };
        match tokio::time::timeout(self.def.timeout, listing).await {
            Ok(r) => r,
            Err(_) => Err(mcp_error(
                server,
                &format!(
                    "it did not list its tools within {}",
                    crate::http::human(self.def.timeout)
                ),
            )),
        }
    }

    /// Calls `tool` with `args`. A server found dead (or that died during the
    /// previous call) is started again, once.
    async fn call(&self, tool: &str, args: Value) -> Result<String, ToolError> {
        let server = &self.def.name;
        let arguments = match args {
            Value::Object(m) => m,
            _ => return Err(ToolError::new("the arguments must be a JSON object")),
        };
        let mut state = self.state.lock().await;
        let alive = state.client.as_ref().is_some_and(|c| !c.is_closed());
        if !alive {
            if state.restarted {
                return Err(ToolError::new(format!(
                    "MCP server {server} stopped and was restarted once already; its tools \
                     are unavailable"
                )));
            }
            state.restarted = true;
            state.client = None;
            tracing::warn!(server = %server, "MCP server stopped; starting it again");
            match connect(&self.def, &self.base_dir).await {
                Ok(c) => state.client = Some(c),
                Err(e) => return Err(ToolError::new(e.to_string())),
            }
        }
        let Some(client) = state.client.as_ref() else {
            return Err(ToolError::new(format!(
                "MCP server {server} is not connected"
            )));
        };
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let called = tokio::time::timeout(self.def.timeout, client.peer().call_tool(params)).await;
        match called {
            Err(_) => Err(ToolError::new(format!(
                "MCP server {server} did not answer {tool} within {}",
                crate::http::human(self.def.timeout)
            ))),
            Ok(Ok(result)) => answer_text(result),
            Ok(Err(e)) => {
                if client.peer().is_transport_closed() {
                    // Dropped: the next call starts it again (once).
                    state.client = None;
                    return Err(ToolError::new(format!(
                        "MCP server {server} stopped while answering {tool}: {e}"
                    )));
                }
                Err(ToolError::new(format!(
                    "MCP server {server} failed on {tool}: {e}"
                )))
            }
        }
    }
}

/// Starts a connection to `def` and runs the MCP handshake, within its
/// timeout.
async fn connect(def: &McpServerDef, base_dir: &std::path::Path) -> Result<Client, AgentError> {
    let server = &def.name;
    let started = async {
        match &def.transport {
            McpTransport::Command { program, args } => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args).current_dir(base_dir).env_clear();
                for var in ["PATH", "HOME"] {
                    if let Ok(v) = std::env::var(var) {
                        cmd.env(var, v);
                    }
                }
                for (k, v) in &def.env {
                    let v = resolve_env_value(v, |n| std::env::var(n).ok())
                        .map_err(|e| mcp_error(server, &format!("env {k}: {e}")))?;
                    cmd.env(k, v);
                }
                let (proc, _) = TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .map_err(|e| mcp_error(server, &format!("cannot start {program:?}: {e}")))?;
                ().serve(proc)
                    .await
                    .map_err(|e| mcp_error(server, &format!("MCP handshake failed: {e}")))
            }
            McpTransport::Url(url) => {
                // rmcp's HTTP client (reqwest 0.13, rustls without a provider)
                // needs a process-wide crypto provider: ring, as the rest of
                // the workspace uses. Already installed is fine.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                ().serve(transport).await.map_err(|e| {
                    mcp_error(server, &format!("MCP handshake with {url} failed: {e}"))
                })
            }
        }
    };
    match tokio::time::timeout(def.timeout, started).await {
        Ok(r) => r,
        Err(_) => Err(mcp_error(
            server,
            &format!(
                "it did not finish the MCP handshake within {}",
                crate::http::human(def.timeout)
            ),
        )),
    }
}

/// A tool result as text: its text blocks (images and others summarised),
/// else its structured content; `isError` results are errors.
fn answer_text(result: CallToolResult) -> Result<String, ToolError> {
    let mut parts: Vec<String> = Vec::new();
    let mut size = 0usize;
    for block in &result.content {
        let text = match serde_json::to_value(block) {
            Ok(v) => match v.get("type").and_then(Value::as_str) {
                Some("text") => v
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Some("image") | Some("audio") => format!(
                    "[{}: {}, {} bytes base64]",
                    v.get("type").and_then(Value::as_str).unwrap_or("media"),
                    v.get("mimeType").and_then(Value::as_str).unwrap_or("?"),
                    v.get("data").and_then(Value::as_str).map_or(0, str::len)
                ),
                Some("resource") => v
                    .pointer("/resource/text")
                    .and_then(Value::as_str)
                    .map_or_else(|| "[resource]".to_string(), str::to_string),
                Some("resource_link") => format!(
                    "[resource: {}]",
                    v.get("uri").and_then(Value::as_str).unwrap_or("?")
                ),
                _ => String::new(),
            },
            Err(_) => String::new(),
        };
        size = size.saturating_add(text.len());
        parts.push(text);
        if size > MAX_MCP_ANSWER_BYTES {
            break;
        }
    }
    let mut text = parts.join("\n");
    if text.trim().is_empty()
        && let Some(s) = &result.structured_content
    {
        text = s.to_string();
    }
    let text = cut(&text, MAX_MCP_ANSWER_BYTES).to_string();
    if result.is_error == Some(true) {
        Err(ToolError::new(if text.is_empty() {
            "the MCP tool reported an error".to_string()
        } else {
            text
        }))
    } else {
        Ok(text)
    }
}

/// One MCP tool, as the model sees it: `mcp__<server>__<tool>`.
#[derive(Debug)]
struct McpTool {
    conn: Arc<Connection>,
    listed: Listed,
    spec: ToolSpec,
}

impl McpTool {
    fn new(conn: Arc<Connection>, listed: Listed) -> Self {
        let mut schema = listed.schema.clone();
        if schema.get("type").is_none() {
            schema["type"] = Value::String("object".into());
        }
        let spec = ToolSpec {
            name: format!("{MCP_PREFIX}{}__{}", conn.def.name, listed.name),
            description: listed.description.clone(),
            input_schema: schema,
        };
        McpTool { conn, listed, spec }
    }
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        self.conn.call(&self.listed.name, args).await
    }
}
