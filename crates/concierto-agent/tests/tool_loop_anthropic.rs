//! The `anthropic` executor's tool-use loop against a local server speaking
//! the Messages API tool-use wire format (`tools`, `tool_use` blocks,
//! `tool_result` blocks with `is_error`), scripted per request.

mod http_mock;
mod tool_kit;

use std::sync::Arc;

use concierto_agent::tools::Tool;
use concierto_agent::{AnthropicExecutor, Executor, Outcome, RetryPolicy};
use concierto_core::config::{ExecutorDef, ExecutorKind};
use concierto_proto::v1::{Budget, TaskStatus};
use http_mock::*;
use serde_json::{Value, json};
use tool_kit::*;

fn claude_def(url: &str) -> ExecutorDef {
    test_env();
    let mut d = def(ExecutorKind::Anthropic, "claude", url);
    d.model = Some("claude-sonnet-4-5".into());
    d.api_key_env = Some(ANTHROPIC_KEY_VAR.into());
    d.prices = Some(prices());
    d
}

fn executor(d: &ExecutorDef, tools: Vec<Arc<dyn Tool>>, max_calls: u32) -> AnthropicExecutor {
    AnthropicExecutor::new(d)
        .expect("executor")
        .with_retry_policy(RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        })
        .with_tools(toolbox(tools, max_calls))
}

/// A message asking for tools `(id, name, input)`, with some text before.
fn tool_use(list: &[(&str, &str, Value)]) -> Reply {
    let mut content = vec![json!({"type": "text", "text": "Let me look."})];
    content.extend(list.iter().map(
        |(id, name, input)| json!({"type": "tool_use", "id": id, "name": name, "input": input}),
    ));
    Reply::json(
        200,
        json!({
            "id": "msg_t", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929", "content": content,
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 1000, "output_tokens": 250}
        }),
    )
}

fn end_turn(text: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "msg_a", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 1400, "output_tokens": 80}
        }),
    )
}

fn assert_status(out: &Outcome, status: TaskStatus) {
    assert_eq!(out.status, status, "{}: {}", out.error, show(&out.details));
}

/// The `tool_result` blocks of a request's last message.
fn results(body: &Value) -> Vec<Value> {
    let last = body["messages"].as_array().and_then(|m| m.last()).cloned();
    let last = last.expect("a message");
    assert_eq!(last["role"], "user");
    last["content"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_model_searches_reads_then_answers() {
    let server = MockServer::start(vec![
        tool_use(&[("toolu_1", "library_search", json!({"query": "glass jars"}))]),
        tool_use(&[("toolu_2", "Read", json!({"path": "brand/guide.md"}))]),
        end_turn("# Jars\n\nRefill them."),
    ])
    .await;
    let search = Recorder::ok("library_search", "3 items");
    let read = Recorder::ok("Read", "Brand guide: warm.");
    let ex = executor(
        &claude_def(&server.url),
        vec![Arc::new(search.clone()), Arc::new(read.clone())],
        8,
    );
    let out = ex.execute(&role(None), &task()).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.output, "# Jars\n\nRefill them.");
    assert_eq!(search.seen(), [json!({"query": "glass jars"})]);
    assert_eq!(read.seen(), [json!({"path": "brand/guide.md"})]);
    let names: Vec<&str> = out.tool_calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["library_search", "Read"]);
    assert_eq!(out.tool_calls[1].arguments, r#"{"path":"brand/guide.md"}"#);
    assert_eq!(out.usage.input_tokens, 1000 + 1000 + 1400);
    assert_eq!(out.usage.output_tokens, 250 + 250 + 80);
    assert_eq!(out.details["stop_reason"], "end_turn");
    assert_eq!(out.details["tool_rounds"], "3");

    let got = server.received();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.header("x-api-key").as_deref(), Some(ANTHROPIC_KEY));
        let tools = r.body["tools"].as_array().expect("tools");
        assert_eq!(
            tools[0],
            json!({
                "name": "library_search",
                "description": "The test tool library_search.",
                "input_schema": {"type": "object", "properties": {
                    "query": {"type": "string"}, "path": {"type": "string"}}},
            })
        );
        assert_eq!(tools[1]["name"], "Read");
        assert!(r.body.get("tool_choice").is_none());
    }
    // Round 2: the assistant's turn as given, then the result.
    let m = got[1].body["messages"].as_array().expect("messages");
    assert_eq!(m.len(), 3);
    assert_eq!(m[1]["role"], "assistant");
    assert_eq!(m[1]["content"][1]["type"], "tool_use");
    assert_eq!(m[1]["content"][1]["id"], "toolu_1");
    assert_eq!(
        results(&got[1].body),
        [
            json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 items", "is_error": false})
        ]
    );
    assert_eq!(
        results(&got[2].body),
        [
            json!({"type": "tool_result", "tool_use_id": "toolu_2", "content": "Brand guide: warm.", "is_error": false})
        ]
    );
}

#[tokio::test]
async fn errors_malformed_input_and_unknown_tools_go_back_as_error_results() {
    let server = MockServer::start(vec![
        tool_use(&[
            ("toolu_1", "WebFetch", json!({"url": "http://10.0.0.1/"})),
            ("toolu_2", "WebFetch", json!("http://example.com")),
            ("toolu_3", "Bash", json!({"cmd": "ls"})),
        ]),
        end_turn("The fetch was refused."),
    ])
    .await;
    let fetch = Recorder::failing("WebFetch", "refused: 10.0.0.1 is a private address");
    let ex = executor(&claude_def(&server.url), vec![Arc::new(fetch.clone())], 8);
    let out = ex.execute(&role(None), &text_task("Fetch it.")).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(fetch.seen().len(), 1, "only the well-formed call ran");
    let r = results(&server.received()[1].body);
    assert_eq!(
        r[0],
        json!({"type": "tool_result", "tool_use_id": "toolu_1",
               "content": "refused: 10.0.0.1 is a private address", "is_error": true})
    );
    assert_eq!(r[1]["is_error"], true);
    assert_eq!(
        r[1]["content"],
        "the arguments must be a JSON object matching the tool's schema, not a string"
    );
    assert_eq!(r[2]["is_error"], true);
    assert_eq!(
        r[2]["content"],
        "unknown tool \"Bash\"; the tools are: WebFetch"
    );
    assert_eq!(out.tool_calls.len(), 3);
    assert_eq!(
        out.tool_calls[0].error,
        "refused: 10.0.0.1 is a private address"
    );
}

#[tokio::test]
async fn a_model_looping_past_the_limit_gets_one_last_round_without_tools_then_fails() {
    let server = MockServer::start(vec![tool_use(&[(
        "toolu_n",
        "library_search",
        json!({"query": "again"}),
    )])])
    .await;
    let search = Recorder::ok("library_search", "r");
    let ex = executor(&claude_def(&server.url), vec![Arc::new(search.clone())], 3);
    let out = ex.execute(&role(None), &text_task("Loop.")).await;

    assert_status(&out, TaskStatus::Failed);
    assert_eq!(
        out.error,
        "the model kept calling tools past the limit of 3 tool calls per step"
    );
    assert_eq!(search.seen().len(), 3);
    let got = server.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].body["tool_choice"], json!({"type": "none"}));
    let last = got[3].body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned();
    let blocks = last.expect("message")["content"].clone();
    let note = blocks
        .as_array()
        .and_then(|b| b.last())
        .cloned()
        .expect("note");
    assert_eq!(note["type"], "text");
    assert!(
        note["text"]
            .as_str()
            .unwrap_or_default()
            .contains("limit of 3 tool calls"),
        "{note}"
    );
}

#[tokio::test]
async fn the_budget_stops_the_loop_naming_the_limit() {
    let server = MockServer::start(vec![tool_use(&[(
        "toolu_n",
        "library_search",
        json!({"query": "x"}),
    )])])
    .await;
    let ex = executor(
        &claude_def(&server.url),
        vec![Arc::new(Recorder::ok("library_search", "r"))],
        16,
    );
    let mut t = text_task("Search.");
    // One round costs (1000·2 + 250·8)/1e6 = $0.004.
    t.budget = Some(Budget {
        usd: 0.01,
        limit: "per_step_usd (role content-creator)".into(),
    });
    let out = ex.execute(&role(None), &t).await;

    assert_status(&out, TaskStatus::Failed);
    assert_eq!(
        out.error,
        "budget reached: this step spent $0.0120 of $0.0100 (per_step_usd (role content-creator))"
    );
    assert_eq!(server.count(), 3);
    assert_eq!(out.tool_calls.len(), 2);
}
