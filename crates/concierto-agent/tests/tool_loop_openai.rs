//! The `openai` executor's tool-calling loop against a local server speaking
//! the Chat Completions tool-calling wire format (`tools`, `tool_calls`,
//! `role: tool` results), scripted per request.

mod http_mock;
mod tool_kit;

use std::sync::Arc;
use std::time::Duration;

use concierto_agent::tools::Tool;
use concierto_agent::{Executor, OpenAiExecutor, Outcome, RetryPolicy};
use concierto_core::config::{ExecutorDef, ExecutorKind};
use concierto_proto::v1::{Budget, TaskStatus};
use http_mock::*;
use serde_json::{Value, json};
use tool_kit::*;

fn gpt_def(url: &str) -> ExecutorDef {
    test_env();
    let mut d = def(ExecutorKind::OpenAi, "gpt", &format!("{url}/v1"));
    d.model = Some("gpt-4o-mini".into());
    d.api_key_env = Some(OPENAI_KEY_VAR.into());
    d.prices = Some(prices());
    d
}

fn executor(d: &ExecutorDef, tools: Vec<Arc<dyn Tool>>, max_calls: u32) -> OpenAiExecutor {
    OpenAiExecutor::new(d)
        .expect("executor")
        .with_retry_policy(RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        })
        .with_tools(toolbox(tools, max_calls))
}

/// A completion asking for tool calls `(id, name, arguments)`.
fn calls(list: &[(&str, &str, &str)]) -> Reply {
    let tool_calls: Vec<Value> = list
        .iter()
        .map(|(id, name, args)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
        })
        .collect();
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-t", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": null, "tool_calls": tool_calls}}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 300}
        }),
    )
}

/// A final answer.
fn answer(text: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-a", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1500, "completion_tokens": 100}
        }),
    )
}

fn assert_status(out: &Outcome, status: TaskStatus) {
    assert_eq!(out.status, status, "{}: {}", out.error, show(&out.details));
}

/// The `role: tool` messages of a request, as (tool_call_id, content).
fn tool_messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap_or_default().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_model_searches_reads_then_answers() {
    let server = MockServer::start(vec![
        calls(&[("call_1", "library_search", r#"{"query": "glass jars"}"#)]),
        calls(&[("call_2", "Read", r#"{"path": "brand/guide.md"}"#)]),
        answer("# Jars\n\nRefill them."),
    ])
    .await;
    let search = Recorder::ok(
        "library_search",
        "3 items: jar-lisbon, jar-oslo, refill-map",
    );
    let read = Recorder::ok("Read", "Brand guide: warm, concrete.");
    let ex = executor(
        &gpt_def(&server.url),
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
    assert_eq!(out.tool_calls[0].arguments, r#"{"query": "glass jars"}"#);
    assert_eq!(
        out.tool_calls[0].answer_bytes,
        "3 items: jar-lisbon, jar-oslo, refill-map".len() as u64
    );
    assert!(out.tool_calls.iter().all(|c| c.error.is_empty()));
    // Usage sums the three rounds; cost from the prices ($2 / $8 per Mtok).
    assert_eq!(out.usage.input_tokens, 1200 + 1200 + 1500);
    assert_eq!(out.usage.output_tokens, 300 + 300 + 100);
    let cost = (3900.0 * 2.0 + 700.0 * 8.0) / 1e6;
    assert!(
        (out.usage.cost_usd - cost).abs() < 1e-12,
        "{}",
        out.usage.cost_usd
    );
    assert_eq!(out.details["tool_rounds"], "3");
    assert_eq!(out.details["http_attempts"], "3");
    assert_eq!(out.details["finish_reason"], "stop");

    let got = server.received();
    assert_eq!(got.len(), 3);
    // Every round carries the tools in the documented shape.
    for r in &got {
        assert_eq!(r.path, "/v1/chat/completions");
        let tools = r.body["tools"].as_array().expect("tools");
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[0]["type"], "function");
        assert_eq!(tools[0]["function"]["name"], "library_search");
        assert_eq!(
            tools[0]["function"]["description"],
            "The test tool library_search."
        );
        assert_eq!(tools[0]["function"]["parameters"]["type"], "object");
        assert_eq!(tools[1]["function"]["name"], "Read");
        assert!(r.body.get("tool_choice").is_none(), "{}", r.body);
    }
    // Round 2: the assistant's tool call, then its result.
    let m = got[1].body["messages"].as_array().expect("messages");
    let assistant = &m[m.len() - 2];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(assistant["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        assistant["tool_calls"][0]["function"]["name"],
        "library_search"
    );
    assert_eq!(
        tool_messages(&got[1].body),
        [(
            "call_1".to_string(),
            "3 items: jar-lisbon, jar-oslo, refill-map".to_string()
        )]
    );
    // Round 3: both results, in order.
    let results = tool_messages(&got[2].body);
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[1],
        ("call_2".into(), "Brand guide: warm, concrete.".into())
    );
}

#[tokio::test]
async fn a_failing_tool_s_error_goes_back_to_the_model() {
    let server = MockServer::start(vec![
        calls(&[("call_1", "Read", r#"{"path": "../etc/passwd"}"#)]),
        answer("I could not read it."),
    ])
    .await;
    let read = Recorder::failing(
        "Read",
        "refused: ../etc/passwd is outside the content folders",
    );
    let ex = executor(&gpt_def(&server.url), vec![Arc::new(read)], 8);
    let out = ex.execute(&role(None), &text_task("Read the file.")).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(
        tool_messages(&server.received()[1].body),
        [(
            "call_1".to_string(),
            "error: refused: ../etc/passwd is outside the content folders".to_string()
        )]
    );
    assert_eq!(
        out.tool_calls[0].error,
        "refused: ../etc/passwd is outside the content folders"
    );
}

#[tokio::test]
async fn malformed_arguments_and_unknown_tools_are_told_to_the_model() {
    let server = MockServer::start(vec![
        calls(&[
            ("call_1", "library_search", "{query: glass"),
            ("call_2", "library_search", "[\"glass\"]"),
            ("call_3", "rm_rf", "{}"),
        ]),
        answer("Done."),
    ])
    .await;
    let search = Recorder::ok("library_search", "nothing");
    let ex = executor(&gpt_def(&server.url), vec![Arc::new(search.clone())], 8);
    let out = ex.execute(&role(None), &text_task("Search.")).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert!(
        search.seen().is_empty(),
        "the tool never ran: {:?}",
        search.seen()
    );
    let results = tool_messages(&server.received()[1].body);
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(
        results[0]
            .1
            .starts_with("error: the arguments are not valid JSON"),
        "{results:?}"
    );
    assert!(
        results[1].1.contains("must be a JSON object"),
        "{results:?}"
    );
    assert_eq!(
        results[1].1,
        "error: the arguments must be a JSON object matching the tool's schema, not an array"
    );
    assert_eq!(
        results[2].1,
        "error: unknown tool \"rm_rf\"; the tools are: library_search"
    );
    assert_eq!(out.tool_calls.len(), 3);
    assert!(out.tool_calls.iter().all(|c| !c.error.is_empty()));
    assert_eq!(out.tool_calls[0].arguments, "{query: glass");
}

#[tokio::test]
async fn a_model_looping_past_the_limit_gets_one_last_round_without_tools_then_fails() {
    let server = MockServer::start(vec![calls(&[(
        "call_n",
        "library_search",
        r#"{"query": "more"}"#,
    )])])
    .await;
    let search = Recorder::ok("library_search", "more results");
    let ex = executor(&gpt_def(&server.url), vec![Arc::new(search.clone())], 2);
    let out = ex.execute(&role(None), &text_task("Search forever.")).await;

    assert_status(&out, TaskStatus::Failed);
    assert_eq!(
        out.error,
        "the model kept calling tools past the limit of 2 tool calls per step"
    );
    assert_eq!(search.seen().len(), 2);
    assert_eq!(out.tool_calls.len(), 2);
    let got = server.received();
    assert_eq!(
        got.len(),
        3,
        "two rounds with tools, one last round without"
    );
    assert!(got[1].body.get("tool_choice").is_none());
    assert_eq!(got[2].body["tool_choice"], "none");
    let last = got[2].body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned();
    let last = last.expect("a message");
    assert_eq!(last["role"], "user");
    assert!(
        last["content"]
            .as_str()
            .unwrap_or_default()
            .contains("limit of 2 tool calls"),
        "{last}"
    );
}

#[tokio::test]
async fn calls_past_the_limit_in_one_round_are_not_run_and_the_model_answers() {
    let server = MockServer::start(vec![
        calls(&[
            ("a", "library_search", r#"{"query": "1"}"#),
            ("b", "library_search", r#"{"query": "2"}"#),
            ("c", "library_search", r#"{"query": "3"}"#),
        ]),
        answer("With two searches: done."),
    ])
    .await;
    let search = Recorder::ok("library_search", "r");
    let ex = executor(&gpt_def(&server.url), vec![Arc::new(search.clone())], 2);
    let out = ex.execute(&role(None), &text_task("Search.")).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.output, "With two searches: done.");
    assert_eq!(search.seen().len(), 2);
    let got = server.received();
    let results = tool_messages(&got[1].body);
    assert_eq!(results[0].1, "r");
    assert!(
        results[2]
            .1
            .starts_with("error: not run: the limit of 2 tool calls"),
        "{results:?}"
    );
    assert_eq!(got[1].body["tool_choice"], "none");
}

#[tokio::test]
async fn the_budget_stops_the_loop_naming_the_limit() {
    let server = MockServer::start(vec![calls(&[(
        "call_n",
        "library_search",
        r#"{"query": "x"}"#,
    )])])
    .await;
    let search = Recorder::ok("library_search", "r");
    let ex = executor(&gpt_def(&server.url), vec![Arc::new(search)], 16);
    let mut t = text_task("Search.");
    // One round costs (1200·2 + 300·8)/1e6 = $0.0048.
    t.budget = Some(Budget {
        usd: 0.009,
        limit: "per_run_usd".into(),
    });
    let out = ex.execute(&role(None), &t).await;

    assert_status(&out, TaskStatus::Failed);
    assert_eq!(
        out.error,
        "budget reached: this step spent $0.0096 of $0.0090 (per_run_usd)"
    );
    assert_eq!(server.count(), 2);
    assert_eq!(
        out.tool_calls.len(),
        1,
        "the second round's call did not run"
    );
    assert!(
        (out.usage.cost_usd - 0.0096).abs() < 1e-12,
        "{}",
        out.usage.cost_usd
    );
}

#[tokio::test]
async fn a_written_deliverable_is_the_output() {
    let server = MockServer::start(vec![
        calls(&[("w", "Write", r##"{"content": "# The post\n\nJars."}"##)]),
        answer("I wrote the post."),
    ])
    .await;
    let ex = executor(&gpt_def(&server.url), vec![Arc::new(WriteDeliverable)], 8);
    let out = ex.execute(&role(None), &text_task("Write it.")).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.output, "# The post\n\nJars.");
    assert_eq!(out.details["final_message"], "I wrote the post.");
}

#[tokio::test]
async fn long_answers_are_cut_and_the_loop_stays_within_the_timeout() {
    let server = MockServer::start(vec![
        calls(&[("a", "library_search", "{}")]),
        calls(&[("b", "Read", "{}")]),
        answer("never"),
    ])
    .await;
    let mut d = gpt_def(&server.url);
    d.timeout = Duration::from_millis(800);
    let search = Recorder::ok("library_search", &"x".repeat(50_000));
    let slow = Recorder::ok("Read", "late").after(Duration::from_secs(30));
    let ex = executor(&d, vec![Arc::new(search), Arc::new(slow)], 8);
    let started = std::time::Instant::now();
    let out = ex.execute(&role(None), &text_task("Go.")).await;

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_status(&out, TaskStatus::Retryable);
    assert!(
        out.error
            .starts_with("the tool loop did not finish within the executor's timeout of 800ms"),
        "{}",
        out.error
    );
    assert_eq!(out.tool_calls.len(), 2);
    assert_eq!(out.tool_calls[1].error, "the step's time ran out");
    let cut = &tool_messages(&server.received()[1].body)[0].1;
    assert!(cut.len() < 33_000, "{}", cut.len());
    assert!(
        cut.ends_with("[cut: the answer was 50000 bytes; only the first 32768 are shown]"),
        "{}",
        &cut[cut.len() - 80..]
    );
}

#[tokio::test]
async fn an_empty_toolbox_sends_the_body_without_tools() {
    let server = MockServer::start(vec![answer("Plain.")]).await;
    let ex = executor(&gpt_def(&server.url), Vec::new(), 8);
    let out = ex.execute(&role(None), &text_task("Say it.")).await;
    assert_status(&out, TaskStatus::Succeeded);
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].body.get("tools").is_none(), "{}", got[0].body);
    assert!(out.tool_calls.is_empty());
    assert!(!out.details.contains_key("tool_rounds"));
}

#[tokio::test]
async fn executor_with_tools_gives_the_toolbox_to_model_executors_only() {
    use concierto_agent::executor_with_tools;
    test_env();
    let server = MockServer::start(vec![
        calls(&[("c", "library_search", r#"{"query": "q"}"#)]),
        answer("Found."),
    ])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = dir.path().join("agents");
    std::fs::create_dir(&agents).expect("mkdir");
    for (name, executor) in [("writer", "gpt"), ("helper", "builtin")] {
        std::fs::write(
            agents.join(format!("{name}.md")),
            format!("---\nname: {name}\ndescription: A role.\nexecutor: {executor}\n---\nYou are {name}.\n"),
        )
        .expect("role file");
    }
    let file = dir.path().join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            "agents:\n  executors:\n    gpt: {{ kind: openai, model: gpt-4o-mini, base_url: \"{}/v1\" }}\n",
            server.url
        ),
    )
    .expect("studio file");
    let studio =
        concierto_core::config::load_with_env(&file, Vec::new()).unwrap_or_else(|p| panic!("{p}"));
    let search = Recorder::ok("library_search", "1 item");
    let tools = || toolbox(vec![Arc::new(search.clone()) as Arc<dyn Tool>], 4);

    let writer = executor_with_tools(&studio, "writer", tools()).expect("writer");
    let out = writer
        .execute(&studio.roles["writer"], &text_task("Find it."))
        .await;
    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.output, "Found.");
    assert_eq!(out.tool_calls.len(), 1);
    assert_eq!(search.seen(), [json!({"query": "q"})]);
    assert_eq!(
        server.received()[0].body["tools"][0]["function"]["name"],
        "library_search"
    );

    let helper = executor_with_tools(&studio, "helper", tools()).expect("helper");
    assert_eq!(helper.name(), "builtin");
}
