//! The `anthropic` executor against a local server speaking the Messages API
//! wire format: the request it sends, what it reads back, retries (529
//! included), timeouts, refusals, and that the key never leaks.

mod http_mock;

use std::time::Duration;

use concierto_agent::{AgentError, AnthropicExecutor, Executor, Outcome, RetryPolicy};
use concierto_core::config::{ExecutorDef, ExecutorKind};
use concierto_proto::v1::TaskStatus;
use http_mock::*;
use serde_json::{Value, json};

fn fast(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
        jitter: 0.2,
    }
}

fn claude_def(url: &str) -> ExecutorDef {
    test_env();
    let mut d = def(ExecutorKind::Anthropic, "claude", url);
    d.model = Some("claude-sonnet-4-5".into());
    d.api_key_env = Some(ANTHROPIC_KEY_VAR.into());
    d
}

fn executor(d: &ExecutorDef, max_retries: u32) -> AnthropicExecutor {
    AnthropicExecutor::new(d)
        .expect("executor")
        .with_retry_policy(fast(max_retries))
}

fn message(texts: &[&str]) -> Value {
    let content: Vec<Value> = texts
        .iter()
        .map(|t| json!({"type": "text", "text": t}))
        .collect();
    json!({
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 2048, "output_tokens": 512}
    })
}

fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

fn ok() -> Reply {
    Reply::json(
        200,
        message(&["# Refill, reuse\n\n", "Glass jars come back."]),
    )
    .header("request-id", "req_011CKv")
}

fn assert_status(out: &Outcome, status: TaskStatus) {
    assert_eq!(out.status, status, "{}: {}", out.error, show(&out.details));
}

#[tokio::test]
async fn success_sends_headers_system_blocks_and_reads_usage_and_cost() {
    let server = MockServer::start(vec![ok()]).await;
    let mut d = claude_def(&format!("{}/", server.url));
    d.prices = Some(prices());
    let ex = executor(&d, 3);
    let out = ex.execute(&role(Some("inherit")), &task()).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.output, "# Refill, reuse\n\nGlass jars come back.");
    assert_eq!(out.content_type, "text/markdown");
    assert_eq!(out.usage.executor, "anthropic");
    assert_eq!(out.usage.model, "claude-sonnet-4-5-20250929");
    assert_eq!(out.usage.input_tokens, 2048);
    assert_eq!(out.usage.output_tokens, 512);
    let cost = (2048.0 * 2.0 + 512.0 * 8.0) / 1e6;
    assert!(
        (out.usage.cost_usd - cost).abs() < 1e-12,
        "{}",
        out.usage.cost_usd
    );
    assert_eq!(out.details["http_attempts"], "1");
    assert_eq!(out.details["request_id"], "req_011CKv");
    assert_eq!(out.details["stop_reason"], "end_turn");
    assert_eq!(out.details["executor_name"], "claude");

    let got = server.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key").as_deref(), Some(ANTHROPIC_KEY));
    assert_eq!(r.header("anthropic-version").as_deref(), Some("2023-06-01"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.header("authorization"), None);
    let b = &r.body;
    assert_eq!(b["model"], "claude-sonnet-4-5");
    assert_eq!(b["max_tokens"], 4096);
    assert_eq!(
        b["system"],
        "You are the studio's content creator. Write warm, concrete posts."
    );
    assert_eq!(b["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(b["messages"][0]["role"], "user");
    let blocks = b["messages"][0]["content"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "text");
    let text = blocks[0]["text"].as_str().expect("text");
    assert!(
        text.starts_with("Write a post about refillable glass jars."),
        "{text}"
    );
    assert!(
        text.contains("## Input: trigger\n\nRefill stations doubled in Lisbon this year."),
        "{text}"
    );
    let images: Vec<&Value> = blocks.iter().filter(|b| b["type"] == "image").collect();
    assert_eq!(images.len(), 2, "{blocks:?}");
    assert_eq!(
        images[0]["source"],
        json!({"type": "url", "url": "https://images.example/jars.png"})
    );
    assert_eq!(
        images[1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": PNG_BASE64})
    );
}

#[tokio::test]
async fn max_tokens_is_sent_as_configured_and_json_answers_are_json() {
    let server = MockServer::start(vec![Reply::json(
        200,
        message(&["{\"category\": \"brand\"}"]),
    )])
    .await;
    let mut d = claude_def(&server.url);
    d.max_tokens = Some(256);
    let ex = executor(&d, 0);
    let out = ex
        .execute(&role(Some("claude-opus-4-1")), &text_task("Categorise."))
        .await;
    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.content_type, "application/json");
    assert_eq!(out.usage.cost_usd, 0.0);
    let b = &server.received()[0].body;
    assert_eq!(b["max_tokens"], 256);
    assert_eq!(b["model"], "claude-opus-4-1", "the role's own model wins");
    assert_eq!(
        b["messages"][0]["content"],
        json!([{"type": "text", "text": "Categorise."}])
    );
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_exactly_then_retried() {
    let server = MockServer::start(vec![
        Reply::json(
            429,
            error_body("rate_limit_error", "Number of requests exceeded"),
        )
        .header("retry-after", "1"),
        ok(),
    ])
    .await;
    let ex = executor(&claude_def(&server.url), 3);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.details["http_attempts"], "2");
    let got = server.received();
    assert_eq!(got.len(), 2);
    let waited = got[1].at - got[0].at;
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
}

#[tokio::test]
async fn overloaded_529_twice_then_success_is_retried() {
    let overloaded = Reply::json(529, error_body("overloaded_error", "Overloaded"));
    let server = MockServer::start(vec![overloaded.clone(), overloaded, ok()]).await;
    let ex = executor(&claude_def(&server.url), 3);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.details["http_attempts"], "3");
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn a_500_every_time_is_retryable_after_max_retries_plus_one_attempts() {
    let server = MockServer::start(vec![Reply::json(
        500,
        error_body("api_error", "Internal server error"),
    )])
    .await;
    let ex = executor(&claude_def(&server.url), 2);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert_eq!(server.count(), 3);
    assert_eq!(out.details["http_attempts"], "3");
    assert!(
        out.error
            .starts_with("anthropic returned 500 after 3 attempts: Internal server error"),
        "{}",
        out.error
    );
}

#[tokio::test]
async fn a_400_fails_at_once_with_the_provider_message() {
    let server = MockServer::start(vec![Reply::json(
        400,
        error_body(
            "invalid_request_error",
            "max_tokens: 100000 > 64000, which is the maximum allowed",
        ),
    )])
    .await;
    let ex = executor(&claude_def(&server.url), 3);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Failed);
    assert_eq!(server.count(), 1);
    assert!(
        out.error.starts_with(
            "anthropic refused the request (400): max_tokens: 100000 > 64000, which is the maximum allowed"
        ),
        "{}",
        out.error
    );
}

#[tokio::test]
async fn a_reply_slower_than_the_timeout_is_retryable() {
    let server = MockServer::start(vec![ok().after(Duration::from_secs(2))]).await;
    let mut d = claude_def(&server.url);
    d.timeout = Duration::from_millis(300);
    let ex = executor(&d, 1);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert!(
        out.error.contains("anthropic did not answer within 300ms"),
        "{}",
        out.error
    );
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn no_text_is_retryable_and_a_refusal_fails() {
    let mut empty = message(&[]);
    empty["stop_reason"] = json!("max_tokens");
    let mut refusal = message(&[]);
    refusal["stop_reason"] = json!("refusal");
    let server = MockServer::start(vec![Reply::json(200, empty), Reply::json(200, refusal)]).await;
    let ex = executor(&claude_def(&server.url), 0);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert!(
        out.error.contains("stop_reason: max_tokens"),
        "{}",
        out.error
    );
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Failed);
    assert_eq!(out.details["stop_reason"], "refusal");
}

#[tokio::test]
async fn a_missing_key_variable_or_no_api_key_env_is_an_error() {
    test_env();
    let mut d = def(ExecutorKind::Anthropic, "claude", "http://127.0.0.1:9");
    d.model = Some("claude-sonnet-4-5".into());
    d.api_key_env = Some(UNSET_VAR.into());
    let e = AnthropicExecutor::new(&d).expect_err("no key");
    assert!(matches!(e, AgentError::MissingApiKey { .. }), "{e:?}");
    assert!(e.to_string().contains(UNSET_VAR), "{e}");
    d.api_key_env = None;
    let e = AnthropicExecutor::new(&d).expect_err("no api_key_env");
    assert!(e.to_string().contains("needs `api_key_env`"), "{e}");
}

#[tokio::test]
async fn the_key_never_reaches_logs_errors_outputs_or_details() {
    let logs = capture_logs();
    let leak = format!("invalid x-api-key: {ANTHROPIC_KEY}");
    let server = MockServer::start(vec![
        ok(),
        Reply::json(401, error_body("authentication_error", &leak)),
        Reply::json(500, error_body("api_error", &leak)),
    ])
    .await;
    let ex = executor(&claude_def(&server.url), 1);
    let mut outs = Vec::new();
    for _ in 0..3 {
        outs.push(ex.execute(&role(None), &task()).await);
    }
    assert_eq!(
        outs.iter().map(|o| o.status).collect::<Vec<_>>(),
        [
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::Retryable
        ]
    );
    assert!(
        outs[1].error.contains("invalid x-api-key: ***"),
        "{}",
        outs[1].error
    );
    assert!(
        server
            .received()
            .iter()
            .all(|r| r.header("x-api-key").as_deref() == Some(ANTHROPIC_KEY))
    );
    for o in &outs {
        assert_absent(ANTHROPIC_KEY, &o.error, "an error");
        assert_absent(ANTHROPIC_KEY, &o.output, "an output");
        assert_absent(ANTHROPIC_KEY, &show(&o.details), "the details");
        assert_absent(ANTHROPIC_KEY, &format!("{o:?}"), "an outcome's Debug");
    }
    assert_absent(ANTHROPIC_KEY, &format!("{ex:?}"), "the executor's Debug");
    let text = logs.text();
    assert!(text.contains("model API answered"), "{text}");
    assert!(text.contains("retrying"), "{text}");
    assert!(text.contains("model call failed"), "{text}");
    assert_absent(ANTHROPIC_KEY, &text, "a log line");
}

/// A 20 MiB answer, streamed chunked or announced by its `Content-Length`, is
/// refused at 16 MiB: the step fails, not retried.
#[tokio::test]
async fn an_answer_larger_than_16_mib_fails_the_step() {
    for chunked in [true, false] {
        let body = huge_json(
            r#"{"type":"message","role":"assistant","model":"m","stop_reason":"end_turn","content":[{"type":"text","text":""#,
            HUGE,
            r#""}]}"#,
        );
        let server = StreamingServer::start(200, body, chunked).await;
        let out = executor(&claude_def(&server.url), 3)
            .execute(&role(None), &task())
            .await;
        assert_status(&out, TaskStatus::Failed);
        assert!(
            out.error
                .contains("anthropic answered 200 with a response larger than 16777216 bytes"),
            "chunked {chunked}: {}",
            out.error
        );
        assert_eq!(server.count(), 1, "chunked {chunked}: not retried");
    }
}
