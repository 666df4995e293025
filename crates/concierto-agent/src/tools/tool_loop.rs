//! The native tool-calling loop the `openai` and `anthropic` executors run
//! when their role has tools.
//!
//! ```text
//!   body = prompt + tools ──▶ POST (http.rs: retries) ──▶ add tokens and cost
//!        ▲                                                 │
//!        │             final answer (no tool call) ◀───────┤──▶ outcome
//!        │                                                 │ tool calls
//!        │   spent ≥ Task.budget.usd? ── yes ──▶ FAILED "budget reached: …"
//!        │                                                 │ no
//!        └── tool results appended ◀── run each call, one at a time, in order
//! ```
//!
//! Bounds:
//! - **Tool calls**: at most `Toolbox::max_calls` calls run per task. A call
//!   asked past the limit is not run; the model is told so as its result, and
//!   the next round is the last: the tools are withheld (`tool_choice: none`)
//!   and the model is asked to answer with what it has. A model that still
//!   asks for a tool then fails the step ("the model kept calling tools past
//!   the limit of N tool calls per step").
//! - **Answers**: each tool answer is cut to `Toolbox::max_answer_bytes`
//!   (on a character boundary), and the cut is said at its end.
//! - **Time**: the whole loop (every model round and every tool call) runs
//!   within the executor's `timeout`; past it the step is `RETRYABLE` with
//!   the calls made so far recorded.
//! - **Budget**: after each round its cost (the executor's `prices`) is added;
//!   when the round asks for tools and the task's `budget.usd` is set and
//!   spent, the step fails before they run: "budget reached: this step spent
//!   $X of $Y (<limit>)". A final answer already given is kept.
//!
//! Malformed arguments (not JSON, not an object), an unknown tool name and a
//! tool's error go back to the model as the tool's result (`is_error` for
//! Anthropic), and the loop goes on. Every call is recorded in
//! `Outcome.tool_calls`.
//!
//! When the model wrote the step's deliverable (`Write`, `Edit`), the
//! deliverable is the step's output and the model's final message goes to
//! `details["final_message"]` (cut to 2,000 bytes).

use std::time::Instant;

use concierto_core::config::ExecutorDef;
use concierto_core::roles::RoleDef;
use concierto_proto::v1::{Task, ToolCall};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::executor::{Outcome, model_for};
use crate::http::{DETAIL_HTTP_ATTEMPTS, DETAIL_REQUEST_ID, HttpClient, human};
use crate::prompt::{Prompt, answer_outcome, stamp, word_count};
use crate::tools::{ToolCx, ToolSpec, Toolbox};

/// `details` key: model rounds of the tool loop.
pub const DETAIL_TOOL_ROUNDS: &str = "tool_rounds";
/// `details` key: the model's final message when the output is the
/// deliverable it wrote with `Write`/`Edit`.
pub const DETAIL_FINAL_MESSAGE: &str = "final_message";
/// Most bytes of a tool call's arguments kept in its `ToolCall` record.
pub const MAX_RECORDED_ARGUMENTS: usize = 2_000;
/// Most bytes of the final message kept in `details`.
const MAX_FINAL_MESSAGE: usize = 2_000;

/// One tool call the model asked for.
#[derive(Debug, Clone)]
pub(crate) struct Requested {
    /// The provider's id of the call.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them.
    pub raw: String,
    /// The arguments as an object, or why they are not one.
    pub args: Result<Value, String>,
}

/// What a model round said.
#[derive(Debug, Clone)]
pub(crate) struct Turn {
    /// Its text.
    pub text: String,
    /// The tool calls it asked for, in order.
    pub calls: Vec<Requested>,
    /// The finish or stop reason.
    pub reason: Option<String>,
    /// The assistant message to append to the conversation.
    pub assistant: Value,
    /// True when the answer has no usable shape (no choices, no content).
    pub malformed: Option<String>,
    /// True when the model refused.
    pub refusal: Option<String>,
}

/// A tool's result, to hand back to the model.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The id of the call it answers.
    pub id: String,
    /// Its text.
    pub content: String,
    /// True when it is an error.
    pub is_error: bool,
}

/// How one provider's wire format says tools, tool calls and results.
pub(crate) trait Wire: Send + Sync {
    /// The provider's name, for reasons.
    fn provider(&self) -> &'static str;
    /// Adds the tools to the first request body.
    fn add_tools(&self, body: &mut Value, specs: &[ToolSpec]);
    /// Reads a round's answer.
    fn read(&self, reply: &Value) -> Turn;
    /// Appends the assistant's message and the tools' results.
    fn push_results(&self, body: &mut Value, assistant: &Value, answers: &[Answer]);
    /// Makes the next round the last: tools withheld, `note` said to the
    /// model.
    fn last_round(&self, body: &mut Value, note: &str);
    /// JSON pointers of the input and output token counts.
    fn usage(&self) -> (&'static str, &'static str);
    /// The `details` key of the finish or stop reason.
    fn reason_key(&self) -> &'static str;
}

/// Everything a loop needs of its executor.
pub(crate) struct Loop<'a> {
    /// The HTTP client (retries per round).
    pub http: &'a HttpClient,
    /// The executor's definition (timeout, prices).
    pub def: &'a ExecutorDef,
    /// The API URL.
    pub url: &'a str,
    /// The headers of every request.
    pub headers: HeaderMap,
    /// The tools.
    pub toolbox: &'a Toolbox,
    /// The provider's wire format.
    pub wire: &'a dyn Wire,
}

/// Token and cost totals of the rounds so far.
#[derive(Default)]
struct Spent {
    input: u64,
    output: u64,
    attempts: u32,
    rounds: u32,
    request_id: Option<String>,
    reason: Option<String>,
}

impl Loop<'_> {
    /// Runs the loop for `task` as `role`; `first_body` builds the request
    /// body without tools.
    pub(crate) async fn run(
        &self,
        role: &RoleDef,
        task: &Task,
        first_body: impl FnOnce(&Prompt, &str) -> Value,
    ) -> Outcome {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.def.timeout;
        let model = model_for(self.def, role);
        if model.is_empty() {
            let out = Outcome::failed(format!(
                "executor {:?} has no model for role {:?}: set `model` on the executor or the role",
                self.def.name, role.name
            ));
            return stamp(out, self.def, &model, (0, 0), started);
        }
        let prompt = Prompt::render(role, task);
        let specs: Vec<ToolSpec> = self.toolbox.tools.iter().map(|t| t.spec()).collect();
        let mut body = first_body(&prompt, &model);
        self.wire.add_tools(&mut body, &specs);
        let cx = ToolCx::new(task);
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut spent = Spent::default();
        let mut answered_model = model.clone();
        let mut last = false;
        let budget = task.budget.as_ref().filter(|b| b.usd > 0.0);
        let provider = self.wire.provider();
        let out = loop {
            spent.rounds += 1;
            let posted = tokio::time::timeout_at(
                deadline,
                self.http.post_json(self.url, self.headers.clone(), &body),
            )
            .await;
            let reply = match posted {
                Err(_) => break self.timed_out(&spent, &calls),
                Ok(Err(out)) => {
                    if let Some(a) = out
                        .details
                        .get(DETAIL_HTTP_ATTEMPTS)
                        .and_then(|a| a.parse::<u32>().ok())
                    {
                        spent.attempts += a;
                    }
                    break out;
                }
                Ok(Ok(reply)) => reply,
            };
            spent.attempts += reply.attempts;
            if reply.request_id.is_some() {
                spent.request_id = reply.request_id.clone();
            }
            if let Some(m) = reply
                .body
                .get("model")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
            {
                answered_model = m.to_string();
            }
            let turn = self.wire.read(&reply.body);
            let (in_ptr, out_ptr) = self.wire.usage();
            spent.input += reply
                .body
                .pointer(in_ptr)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| word_count(&body.to_string()));
            spent.output += reply
                .body
                .pointer(out_ptr)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| word_count(&turn.text));
            spent.reason = turn.reason.clone();
            if let Some(why) = turn.malformed {
                break Outcome::retryable(self.http.scrub(&why));
            }
            if turn.calls.is_empty() {
                break self.finish(task, &turn, &cx);
            }
            if last {
                break Outcome::failed(format!(
                    "the model kept calling tools past the limit of {} tool calls per step",
                    self.toolbox.max_calls
                ));
            }
            if let Some(b) = budget {
                let cost = self
                    .def
                    .prices
                    .map_or(0.0, |p| p.cost_usd(spent.input, spent.output));
                if cost >= b.usd {
                    let limit = if b.limit.trim().is_empty() {
                        "the task's budget"
                    } else {
                        b.limit.as_str()
                    };
                    break Outcome::failed(format!(
                        "budget reached: this step spent ${cost:.4} of ${:.4} ({limit})",
                        b.usd
                    ));
                }
            }
            let mut answers = Vec::with_capacity(turn.calls.len());
            for req in &turn.calls {
                let used = u32::try_from(calls.len()).unwrap_or(u32::MAX);
                if used >= self.toolbox.max_calls {
                    answers.push(Answer {
                        id: req.id.clone(),
                        content: format!(
                            "not run: the limit of {} tool calls per step is reached; answer \
                             now with what you have",
                            self.toolbox.max_calls
                        ),
                        is_error: true,
                    });
                    continue;
                }
                let t0 = Instant::now();
                let (answer, record) =
                    match tokio::time::timeout_at(deadline, self.call_one(req, &cx)).await {
                        Ok(done) => done,
                        Err(_) => {
                            let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
                            calls.push(record(req, 0, ms, "the step's time ran out"));
                            break;
                        }
                    };
                answers.push(answer);
                calls.push(record);
            }
            if tokio::time::Instant::now() >= deadline {
                break self.timed_out(&spent, &calls);
            }
            self.wire.push_results(&mut body, &turn.assistant, &answers);
            let used = u32::try_from(calls.len()).unwrap_or(u32::MAX);
            if used >= self.toolbox.max_calls {
                last = true;
                self.wire.last_round(
                    &mut body,
                    &format!(
                        "The limit of {} tool calls per step is reached: the tools are withheld. \
                         Answer now with what you have.",
                        self.toolbox.max_calls
                    ),
                );
            }
            tracing::debug!(
                provider,
                round = spent.rounds,
                tool_calls = calls.len(),
                "tool round done"
            );
        };
        self.stamp(out, calls, spent, &answered_model, started)
    }

    /// Runs one requested call: the answer for the model and its record.
    async fn call_one(&self, req: &Requested, cx: &ToolCx) -> (Answer, ToolCall) {
        let t0 = Instant::now();
        let result = match (&req.args, self.toolbox.get(&req.name)) {
            (_, None) => Err(format!(
                "unknown tool {:?}; the tools are: {}",
                req.name,
                self.toolbox
                    .tools
                    .iter()
                    .map(|t| t.spec().name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (Err(why), Some(_)) => Err(why.clone()),
            (Ok(args), Some(tool)) => tool.call(args.clone(), cx).await.map_err(|e| e.0),
        };
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (content, error) = match result {
            Ok(text) => (cut_answer(&text, self.toolbox.max_answer_bytes), None),
            Err(e) => (cut_answer(&e, self.toolbox.max_answer_bytes), Some(e)),
        };
        let mut rec = record(req, content.len(), ms, "");
        if let Some(e) = &error {
            rec.error = cut(e, MAX_RECORDED_ARGUMENTS).to_string();
        }
        (
            Answer {
                id: req.id.clone(),
                content,
                is_error: error.is_some(),
            },
            rec,
        )
    }

    /// The outcome of a round with no tool call.
    fn finish(&self, task: &Task, turn: &Turn, cx: &ToolCx) -> Outcome {
        if let Some(doc) = cx.written().filter(|d| !d.trim().is_empty()) {
            let mut out = answer_outcome(task, &doc);
            if !turn.text.trim().is_empty() {
                out.details.insert(
                    DETAIL_FINAL_MESSAGE.into(),
                    cut(turn.text.trim(), MAX_FINAL_MESSAGE).to_string(),
                );
            }
            return out;
        }
        if !turn.text.trim().is_empty() {
            return answer_outcome(task, &turn.text);
        }
        match &turn.refusal {
            Some(r) => Outcome::failed(format!(
                "the model refused: {}",
                self.http.scrub(&crate::http::snippet(r))
            )),
            None => Outcome::retryable(format!(
                "{} answered with no text ({}: {})",
                self.wire.provider(),
                self.wire.reason_key(),
                turn.reason.as_deref().unwrap_or("none")
            )),
        }
    }

    fn timed_out(&self, spent: &Spent, calls: &[ToolCall]) -> Outcome {
        Outcome::retryable(format!(
            "the tool loop did not finish within the executor's timeout of {} ({} model \
             rounds, {} tool calls)",
            human(self.def.timeout),
            spent.rounds,
            calls.len()
        ))
    }

    /// Usage summed over the rounds, the details and the calls.
    fn stamp(
        &self,
        mut out: Outcome,
        calls: Vec<ToolCall>,
        spent: Spent,
        model: &str,
        started: Instant,
    ) -> Outcome {
        out.details
            .insert(DETAIL_HTTP_ATTEMPTS.into(), spent.attempts.to_string());
        out.details
            .insert(DETAIL_TOOL_ROUNDS.into(), spent.rounds.to_string());
        if let Some(id) = spent.request_id {
            out.details.insert(DETAIL_REQUEST_ID.into(), id);
        }
        if let Some(r) = spent.reason {
            out.details.insert(self.wire.reason_key().into(), r);
        }
        out.tool_calls = calls;
        stamp(out, self.def, model, (spent.input, spent.output), started)
    }
}

/// The record of a call.
fn record(req: &Requested, answer_bytes: usize, latency_ms: u64, error: &str) -> ToolCall {
    ToolCall {
        name: req.name.clone(),
        arguments: cut(&req.raw, MAX_RECORDED_ARGUMENTS).to_string(),
        answer_bytes: answer_bytes as u64,
        latency_ms,
        error: error.to_string(),
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `text` cut to `max` bytes with the cut said at its end.
pub(crate) fn cut_answer(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    format!(
        "{}\n[cut: the answer was {} bytes; only the first {} are shown]",
        cut(text, max),
        text.len(),
        cut(text, max).len()
    )
}

/// Arguments given as a JSON string (OpenAI): an object, or why not.
pub(crate) fn parse_arguments(raw: &str) -> Result<Value, String> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    match serde_json::from_str::<Value>(raw) {
        Ok(v) => object_arguments(v),
        Err(e) => Err(format!(
            "the arguments are not valid JSON ({e}); send a JSON object matching the tool's schema"
        )),
    }
}

/// Arguments given as JSON (Anthropic): an object, or why not.
pub(crate) fn object_arguments(v: Value) -> Result<Value, String> {
    match v {
        Value::Object(_) => Ok(v),
        other => Err(format!(
            "the arguments must be a JSON object matching the tool's schema, not {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_cut_on_a_char_boundary_and_the_cut_is_said() {
        assert_eq!(cut_answer("short", 10), "short");
        let t = cut_answer("ééééé", 3);
        assert!(
            t.starts_with("é\n[cut: the answer was 10 bytes; only the first 2"),
            "{t}"
        );
    }

    #[test]
    fn arguments_must_be_a_json_object() {
        assert!(parse_arguments("{\"q\": 1}").is_ok());
        assert!(parse_arguments("").is_ok());
        let e = parse_arguments("{q: 1").expect_err("not json");
        assert!(e.contains("not valid JSON"), "{e}");
        let e = parse_arguments("[1]").expect_err("array");
        assert!(e.contains("not an array"), "{e}");
    }
}
