//! The `anthropic` executor: the Anthropic Messages API.
//!
//! `POST {base_url}/v1/messages` with headers `x-api-key`,
//! `anthropic-version: 2023-06-01` and body `{model, max_tokens, system,
//! messages: [{role: "user", content: [blocks]}]}`: `text` blocks, and `image`
//! blocks (`source` `base64` with its media type, or `url`) for image inputs.
//! The answer is the `text` blocks of `content`, joined; tokens come from
//! `usage.input_tokens` and `usage.output_tokens`.
//!
//! With a non-empty [`Toolbox`] ([`AnthropicExecutor::with_tools`]) the
//! executor runs the tool-calling loop ([`crate::tools::tool_loop`]): the body
//! gains `tools: [{name, description, input_schema}]`; an answer with
//! `tool_use {id, name, input}` blocks (stop_reason `tool_use`) is appended as
//! the assistant message, then a user message of `tool_result {tool_use_id,
//! content, is_error}` blocks, and the next round is asked. The last round,
//! past the tool-call limit, sends `tool_choice: {type: "none"}` and a text
//! block asking for the answer. An empty toolbox sends today's body,
//! unchanged.

use async_trait::async_trait;
use concierto_core::config::{DEFAULT_ANTHROPIC_MAX_TOKENS, ExecutorDef};
use concierto_core::roles::RoleDef;
use concierto_proto::v1::Task;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::error::AgentError;
use crate::executor::{Executor, Outcome, model_for};
use crate::http::{Answered, ApiKey, Call, HttpClient, RetryPolicy};
use crate::prompt::{ImageSource, Part, Prompt, answer_outcome};
use crate::tools::tool_loop::{Answer, Loop, Requested, Turn, Wire, object_arguments};
use crate::tools::{ToolSpec, Toolbox};

/// The executor's name in results (`Usage.executor`).
pub const ANTHROPIC: &str = "anthropic";

/// The `anthropic-version` header sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `details` key: why the model stopped (`end_turn`, `max_tokens`, ...).
pub const DETAIL_STOP_REASON: &str = "stop_reason";

/// Calls the Anthropic Messages API. See the module documentation.
#[derive(Debug)]
pub struct AnthropicExecutor {
    def: ExecutorDef,
    url: String,
    headers: HeaderMap,
    http: HttpClient,
    toolbox: Toolbox,
}

impl AnthropicExecutor {
    /// For executor `def`: it needs `api_key_env`, and its key is read now
    /// from the variable it names (an error naming the variable when it is
    /// unset).
    pub fn new(def: &ExecutorDef) -> Result<Self, AgentError> {
        let Some(var) = def.api_key_env.as_deref() else {
            return Err(AgentError::InvalidExecutor {
                executor: def.name.clone(),
                why: "an anthropic executor needs `api_key_env`, the environment variable \
                      holding the key (e.g. ANTHROPIC_API_KEY)"
                    .into(),
            });
        };
        let key = ApiKey::from_env(&def.name, var)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-api-key"),
            key.header(&def.name, "")?,
        );
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let base = def
            .base_url
            .as_deref()
            .unwrap_or(concierto_core::config::DEFAULT_ANTHROPIC_BASE_URL)
            .trim_end_matches('/');
        Ok(AnthropicExecutor {
            def: def.clone(),
            url: format!("{base}/v1/messages"),
            headers,
            http: HttpClient::new(ANTHROPIC, def, Some(key))?,
            toolbox: Toolbox::new(),
        })
    }

    /// With these tools: a non-empty toolbox runs the tool-calling loop.
    pub fn with_tools(mut self, toolbox: Toolbox) -> Self {
        self.toolbox = toolbox;
        self
    }

    /// With another retry policy (tests use milliseconds).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.http.policy = policy;
        self
    }

    /// The definition it was built from.
    pub fn def(&self) -> &ExecutorDef {
        &self.def
    }

    /// The request body for `prompt` with `model`.
    fn body(&self, prompt: &Prompt, model: &str) -> Value {
        let blocks: Vec<Value> = prompt
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => json!({"type": "text", "text": t}),
                Part::Image(i) => match &i.source {
                    ImageSource::Base64 { media_type, data } => json!({
                        "type": "image",
                        "source": {"type": "base64", "media_type": media_type, "data": data},
                    }),
                    ImageSource::Url(url) => json!({
                        "type": "image",
                        "source": {"type": "url", "url": url},
                    }),
                },
            })
            .collect();
        let mut body = json!({
            "model": model,
            "max_tokens": self.def.max_tokens.unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS),
            "messages": [{"role": "user", "content": blocks}],
        });
        if !prompt.system.is_empty() {
            body["system"] = json!(prompt.system);
        }
        body
    }
}

#[async_trait]
impl Executor for AnthropicExecutor {
    fn name(&self) -> &str {
        ANTHROPIC
    }

    fn model(&self, role: &RoleDef) -> String {
        model_for(&self.def, role)
    }

    async fn execute(&self, role: &RoleDef, task: &Task) -> Outcome {
        if !self.toolbox.is_empty() {
            let tool_loop = Loop {
                http: &self.http,
                def: &self.def,
                url: &self.url,
                headers: self.headers.clone(),
                toolbox: &self.toolbox,
                wire: &AnthropicWire,
            };
            return tool_loop
                .run(role, task, |prompt, model| self.body(prompt, model))
                .await;
        }
        let call = self
            .http
            .call_model(
                &self.def,
                role,
                task,
                &self.url,
                self.headers.clone(),
                |prompt, model| self.body(prompt, model),
            )
            .await;
        let Call {
            started,
            model: answered_model,
            estimate,
            reply,
        } = match call {
            Ok(c) => c,
            Err(out) => return out,
        };
        let b = &reply.body;
        let stop_reason = b
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        let text: String = b
            .get("content")
            .and_then(Value::as_array)
            .map(|blocks| {
                blocks
                    .iter()
                    .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default();
        let out = if !text.trim().is_empty() {
            answer_outcome(task, &text)
        } else if stop_reason.as_deref() == Some("refusal") {
            Outcome::failed("the model refused to answer (stop_reason: refusal)")
        } else {
            Outcome::retryable(format!(
                "{ANTHROPIC} answered with no text (stop_reason: {})",
                stop_reason.as_deref().unwrap_or("none")
            ))
        };
        let answered = Answered {
            usage: ("/usage/input_tokens", "/usage/output_tokens"),
            estimate,
            reason: stop_reason.map(|r| (DETAIL_STOP_REASON, r)),
        };
        reply.finish(out, answered, &self.def, &answered_model, started)
    }
}

/// The Messages API tool-use wire format.
struct AnthropicWire;

impl Wire for AnthropicWire {
    fn provider(&self) -> &'static str {
        ANTHROPIC
    }

    fn add_tools(&self, body: &mut Value, specs: &[ToolSpec]) {
        let tools: Vec<Value> = specs
            .iter()
            .map(|s| json!({"name": s.name, "description": s.description, "input_schema": s.input_schema}))
            .collect();
        body["tools"] = Value::Array(tools);
    }

    fn read(&self, reply: &Value) -> Turn {
        let blocks: Vec<Value> = reply
            .get("content")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let kind = |b: &Value, k: &str| b.get("type").and_then(Value::as_str) == Some(k);
        let text = blocks
            .iter()
            .filter(|b| kind(b, "text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("");
        let calls = blocks
            .iter()
            .filter(|b| kind(b, "tool_use"))
            .enumerate()
            .map(|(n, b)| {
                let input = b.get("input").cloned().unwrap_or(Value::Null);
                Requested {
                    id: b
                        .get("id")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("toolu_{n}"), str::to_string),
                    name: b
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    raw: input.to_string(),
                    args: object_arguments(input),
                }
            })
            .collect();
        let reason = reply
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        Turn {
            malformed: None,
            refusal: (reason.as_deref() == Some("refusal"))
                .then(|| "stop_reason: refusal".to_string()),
            reason,
            text,
            calls,
            assistant: json!({"role": "assistant", "content": blocks}),
        }
    }

    fn push_results(&self, body: &mut Value, assistant: &Value, answers: &[Answer]) {
        if let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) {
            messages.push(assistant.clone());
            let results: Vec<Value> = answers
                .iter()
                .map(|a| {
                    json!({"type": "tool_result", "tool_use_id": a.id, "content": a.content,
                           "is_error": a.is_error})
                })
                .collect();
            messages.push(json!({"role": "user", "content": results}));
        }
    }

    fn last_round(&self, body: &mut Value, note: &str) {
        body["tool_choice"] = json!({"type": "none"});
        if let Some(content) = body
            .get_mut("messages")
            .and_then(Value::as_array_mut)
            .and_then(|m| m.last_mut())
            .and_then(|m| m.get_mut("content"))
            .and_then(Value::as_array_mut)
        {
            content.push(json!({"type": "text", "text": note}));
        }
    }

    fn usage(&self) -> (&'static str, &'static str) {
        ("/usage/input_tokens", "/usage/output_tokens")
    }

    fn reason_key(&self) -> &'static str {
        DETAIL_STOP_REASON
    }
}
