//! Concierto's tools served over MCP (`concierto mcp`), with `rmcp`: an
//! MCP-capable agent CLI run by a `command` executor gets the same tools a
//! model executor does.
//!
//! `tools/list` gives every tool of the [`Toolbox`] with its JSON schema and
//! description; `tools/call` runs [`Tool::call`] and answers its text (cut to
//! the toolbox's `max_answer_bytes`, the cut said), a [`ToolError`] or an
//! unknown tool as a result with `isError: true` (the client's model sees the
//! reason). Calls past the toolbox's `max_calls` in one session answer an
//! error too. The tools of one session share one [`ToolCx`] (an empty task;
//! `Write`/`Edit` change that session's deliverable).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use concierto_proto::v1::Task;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::Value;

use crate::error::AgentError;
use crate::tools::tool_loop::cut_answer;
use crate::tools::{ToolCx, Toolbox};

/// The name the server gives in its `initialize` answer.
pub const MCP_SERVER_NAME: &str = "concierto";

/// Serves every tool of `toolbox` over MCP on stdin/stdout until the client
/// closes the connection.
pub async fn serve_stdio(toolbox: Toolbox) -> Result<(), AgentError> {
    serve(toolbox, rmcp::transport::stdio()).await
}

/// Serves every tool of `toolbox` over MCP on `transport` (stdio, a duplex
/// stream, a socket: anything `rmcp` takes as a transport) until the client
/// closes it.
pub async fn serve<T, E, A>(toolbox: Toolbox, transport: T) -> Result<(), AgentError>
where
    T: rmcp::transport::IntoTransport<RoleServer, E, A> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let handler = Served {
        toolbox: Arc::new(toolbox),
        cx: ToolCx::new(&Task::default()),
        calls: Arc::new(AtomicU32::new(0)),
    };
    let running = handler
        .serve(transport)
        .await
        .map_err(|e| AgentError::Mcp {
            server: MCP_SERVER_NAME.into(),
            why: format!("MCP handshake failed: {e}"),
        })?;
    running.waiting().await.map_err(|e| AgentError::Mcp {
        server: MCP_SERVER_NAME.into(),
        why: format!("the MCP session ended abnormally: {e}"),
    })?;
    Ok(())
}

#[derive(Clone)]
struct Served {
    toolbox: Arc<Toolbox>,
    cx: ToolCx,
    calls: Arc<AtomicU32>,
}

impl Served {
    fn error(text: String) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(text)])
    }
}

impl ServerHandler for Served {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                MCP_SERVER_NAME,
                env!("CARGO_PKG_VERSION"),
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self
            .toolbox
            .tools
            .iter()
            .map(|t| {
                let spec = t.spec();
                let schema = match spec.input_schema {
                    Value::Object(m) => m,
                    _ => serde_json::Map::from_iter([("type".to_string(), Value::from("object"))]),
                };
                rmcp::model::Tool::new(spec.name, spec.description, Arc::new(schema))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let Some(tool) = self.toolbox.get(&name) else {
            let known: Vec<String> = self.toolbox.tools.iter().map(|t| t.spec().name).collect();
            return Ok(Served::error(format!(
                "unknown tool {name:?}; the tools are: {}",
                known.join(", ")
            ))
            .into());
        };
        let used = self.calls.fetch_add(1, Ordering::SeqCst);
        if used >= self.toolbox.max_calls {
            return Ok(Served::error(format!(
                "not run: the limit of {} tool calls per session is reached",
                self.toolbox.max_calls
            ))
            .into());
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        let max = self.toolbox.max_answer_bytes;
        let result = match tool.call(args, &self.cx).await {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(cut_answer(&text, max))]),
            Err(e) => Served::error(cut_answer(&e.0, max)),
        };
        Ok(result.into())
    }
}
