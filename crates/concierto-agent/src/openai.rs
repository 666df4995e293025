//! The `openai` executor: the Chat Completions API of OpenAI and of the
//! servers that speak it (Ollama, llama.cpp, vLLM, ...).
//!
//! `POST {base_url}/chat/completions` with `{model, messages: [system, user],
//! max_tokens?}`; the user message is a string, or a list of `text` and
//! `image_url` parts when an input is an image. The answer is
//! `choices[0].message.content`; tokens come from `usage.prompt_tokens` and
//! `usage.completion_tokens`. Without `api_key_env` no `Authorization` header
//! is sent (local servers).
//!
//! With a non-empty [`Toolbox`] ([`OpenAiExecutor::with_tools`]) the executor
//! runs the tool-calling loop ([`crate::tools::tool_loop`]): the body gains
//! `tools: [{type: "function", function: {name, description, parameters}}]`;
//! an answer with `choices[0].message.tool_calls[{id, type: "function",
//! function: {name, arguments}}]` (`arguments` a JSON string, finish_reason
//! `tool_calls`) is appended as the assistant message, each call's result as
//! `{role: "tool", tool_call_id, content}` (an error's text starts with
//! `error: `), and the next round is asked. The last round, past the
//! tool-call limit, sends `tool_choice: "none"` and a user message asking for
//! the answer. An empty toolbox sends today's body, unchanged.

use async_trait::async_trait;
use concierto_core::config::ExecutorDef;
use concierto_core::roles::RoleDef;
use concierto_proto::v1::Task;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde_json::{Value, json};

use crate::error::AgentError;
use crate::executor::{Executor, Outcome, model_for};
use crate::http::{Answered, ApiKey, Call, HttpClient, RetryPolicy};
use crate::prompt::{Part, Prompt, answer_outcome};
use crate::tools::tool_loop::{Answer, Loop, Requested, Turn, Wire, parse_arguments};
use crate::tools::{ToolSpec, Toolbox};

/// The executor's name in results (`Usage.executor`).
pub const OPENAI: &str = "openai";

/// `details` key: why the model stopped (`stop`, `length`, ...).
pub const DETAIL_FINISH_REASON: &str = "finish_reason";

/// Calls an OpenAI-compatible Chat Completions API. See the module
/// documentation.
#[derive(Debug)]
pub struct OpenAiExecutor {
    def: ExecutorDef,
    url: String,
    http: HttpClient,
    toolbox: Toolbox,
}

impl OpenAiExecutor {
    /// For executor `def`: its key is read now from the variable its
    /// `api_key_env` names (an error naming the variable when it is unset).
    pub fn new(def: &ExecutorDef) -> Result<Self, AgentError> {
        let key = def
            .api_key_env
            .as_deref()
            .map(|var| ApiKey::from_env(&def.name, var))
            .transpose()?;
        let base = def
            .base_url
            .as_deref()
            .unwrap_or(concierto_core::config::DEFAULT_OPENAI_BASE_URL)
            .trim_end_matches('/');
        Ok(OpenAiExecutor {
            def: def.clone(),
            url: format!("{base}/chat/completions"),
            http: HttpClient::new(OPENAI, def, key)?,
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
        let user = if prompt.has_images() {
            let parts: Vec<Value> = prompt
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => json!({"type": "text", "text": t}),
                    Part::Image(i) => {
                        json!({"type": "image_url", "image_url": {"url": i.source.to_url()}})
                    }
                })
                .collect();
            Value::Array(parts)
        } else {
            Value::String(prompt.user_text())
        };
        let mut messages = Vec::new();
        if !prompt.system.is_empty() {
            messages.push(json!({"role": "system", "content": prompt.system}));
        }
        messages.push(json!({"role": "user", "content": user}));
        let mut body = json!({"model": model, "messages": messages});
        if let Some(n) = self.def.max_tokens {
            body["max_tokens"] = json!(n);
        }
        body
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(key) = self.http.key()
            && let Ok(v) = key.header(&self.def.name, "Bearer ")
        {
            h.insert(AUTHORIZATION, v);
        }
        h
    }
}

#[async_trait]
impl Executor for OpenAiExecutor {
    fn name(&self) -> &str {
        OPENAI
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
                headers: self.headers(),
                toolbox: &self.toolbox,
                wire: &OpenAiWire,
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
                self.headers(),
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
        let choice = b.pointer("/choices/0");
        let finish_reason = choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let message = choice.and_then(|c| c.get("message"));
        let content = message.and_then(|m| m.get("content")).map(text_of);
        let out = match (choice, content) {
            (None, _) => Outcome::retryable(format!(
                "{OPENAI} answered with no choices: {}",
                self.http.scrub(&crate::http::snippet(&b.to_string()))
            )),
            (Some(_), Some(text)) if !text.trim().is_empty() => answer_outcome(task, &text),
            (Some(_), _) => match message
                .and_then(|m| m.get("refusal"))
                .and_then(Value::as_str)
                .filter(|r| !r.trim().is_empty())
            {
                Some(refusal) => Outcome::failed(format!(
                    "the model refused: {}",
                    self.http.scrub(&crate::http::snippet(refusal))
                )),
                None => Outcome::retryable(format!(
                    "{OPENAI} answered with an empty message (finish_reason: {})",
                    finish_reason.as_deref().unwrap_or("none")
                )),
            },
        };
        let answered = Answered {
            usage: ("/usage/prompt_tokens", "/usage/completion_tokens"),
            estimate,
            reason: finish_reason.map(|r| (DETAIL_FINISH_REASON, r)),
        };
        reply.finish(out, answered, &self.def, &answered_model, started)
    }
}

/// A message's `content`: a string, or the `text` of a list of parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The Chat Completions tool-calling wire format.
struct OpenAiWire;

impl Wire for OpenAiWire {
    fn provider(&self) -> &'static str {
        OPENAI
    }

    fn add_tools(&self, body: &mut Value, specs: &[ToolSpec]) {
        let tools: Vec<Value> = specs
            .iter()
            .map(|s| {
                json!({"type": "function", "function": {
                    "name": s.name, "description": s.description, "parameters": s.input_schema,
                }})
            })
            .collect();
        body["tools"] = Value::Array(tools);
    }

    fn read(&self, reply: &Value) -> Turn {
        let choice = reply.pointer("/choices/0");
        let message = choice.and_then(|c| c.get("message"));
        let text = message
            .and_then(|m| m.get("content"))
            .map(text_of)
            .unwrap_or_default();
        let raw_calls: Vec<Value> = message
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let calls = raw_calls
            .iter()
            .enumerate()
            .map(|(n, c)| {
                let raw = match c.pointer("/function/arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                Requested {
                    id: c
                        .get("id")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("call_{n}"), str::to_string),
                    name: c
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    args: parse_arguments(&raw),
                    raw,
                }
            })
            .collect();
        let mut assistant = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
        if !raw_calls.is_empty() {
            assistant["tool_calls"] = Value::Array(raw_calls);
        }
        Turn {
            malformed: choice.is_none().then(|| {
                format!(
                    "{OPENAI} answered with no choices: {}",
                    crate::http::snippet(&reply.to_string())
                )
            }),
            refusal: message
                .and_then(|m| m.get("refusal"))
                .and_then(Value::as_str)
                .filter(|r| !r.trim().is_empty())
                .map(str::to_string),
            reason: choice
                .and_then(|c| c.get("finish_reason"))
                .and_then(Value::as_str)
                .map(str::to_string),
            text,
            calls,
            assistant,
        }
    }

    fn push_results(&self, body: &mut Value, assistant: &Value, answers: &[Answer]) {
        if let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) {
            messages.push(assistant.clone());
            for a in answers {
                let content = if a.is_error {
                    format!("error: {}", a.content)
                } else {
                    a.content.clone()
                };
                messages.push(json!({"role": "tool", "tool_call_id": a.id, "content": content}));
            }
        }
    }

    fn last_round(&self, body: &mut Value, note: &str) {
        body["tool_choice"] = json!("none");
        if let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) {
            messages.push(json!({"role": "user", "content": note}));
        }
    }

    fn usage(&self) -> (&'static str, &'static str) {
        ("/usage/prompt_tokens", "/usage/completion_tokens")
    }

    fn reason_key(&self) -> &'static str {
        DETAIL_FINISH_REASON
    }
}
