//! The `openai` executor against a local server speaking the Chat Completions
//! wire format: the request it sends, what it reads back, retries, timeouts,
//! refusals, and that the key never leaks.

mod http_mock;

use std::time::Duration;

use concierto_agent::{AgentError, Executor, OpenAiExecutor, Outcome, RetryPolicy, model_for};
use concierto_core::config::{ExecutorDef, ExecutorKind};
use concierto_proto::v1::{ReviewAction, ReviewContext, TaskStatus};
use http_mock::*;
use serde_json::{Value, json};

/// Milliseconds, not seconds, between attempts.
fn fast(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
        jitter: 0.2,
    }
}

fn gpt_def(url: &str) -> ExecutorDef {
    test_env();
    let mut d = def(ExecutorKind::OpenAi, "gpt", &format!("{url}/v1/"));
    d.model = Some("gpt-4o-mini".into());
    d.api_key_env = Some(OPENAI_KEY_VAR.into());
    d
}

fn executor(d: &ExecutorDef, max_retries: u32) -> OpenAiExecutor {
    OpenAiExecutor::new(d)
        .expect("executor")
        .with_retry_policy(fast(max_retries))
}

fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500}
    })
}

fn error_body(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "code": null}})
}

fn ok() -> Reply {
    Reply::json(200, completion("# Refill, reuse\n\nGlass jars come back."))
        .header("x-request-id", "req_abc123")
}

fn assert_status(out: &Outcome, status: TaskStatus) {
    assert_eq!(out.status, status, "{}: {}", out.error, show(&out.details));
}

#[tokio::test]
async fn success_sends_model_prompt_images_and_key_and_reads_usage_and_cost() {
    let server = MockServer::start(vec![ok()]).await;
    let mut d = gpt_def(&server.url);
    d.max_tokens = Some(900);
    d.prices = Some(prices());
    let ex = executor(&d, 3);
    let out = ex.execute(&role(None), &task()).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.output, "# Refill, reuse\n\nGlass jars come back.");
    assert_eq!(out.content_type, "text/markdown");
    assert_eq!(out.usage.executor, "openai");
    assert_eq!(out.usage.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(out.usage.input_tokens, 1200);
    assert_eq!(out.usage.output_tokens, 300);
    let cost = (1200.0 * 2.0 + 300.0 * 8.0) / 1e6;
    assert!(
        (out.usage.cost_usd - cost).abs() < 1e-12,
        "{}",
        out.usage.cost_usd
    );
    assert_eq!(out.details["http_attempts"], "1");
    assert_eq!(out.details["request_id"], "req_abc123");
    assert_eq!(out.details["finish_reason"], "stop");
    assert_eq!(out.details["executor_name"], "gpt");

    let got = server.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization").as_deref(),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let b = &r.body;
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(b["max_tokens"], 900);
    assert_eq!(b["messages"][0]["role"], "system");
    assert_eq!(
        b["messages"][0]["content"],
        "You are the studio's content creator. Write warm, concrete posts."
    );
    assert_eq!(b["messages"][1]["role"], "user");
    let parts = b["messages"][1]["content"].as_array().expect("parts");
    let text = parts[0]["text"].as_str().expect("text part");
    assert_eq!(parts[0]["type"], "text");
    assert!(
        text.starts_with("Write a post about refillable glass jars."),
        "{text}"
    );
    assert!(text.contains("campaign_launch"), "{text}");
    assert!(
        text.contains("## Input: trigger\n\nRefill stations doubled in Lisbon this year."),
        "{text}"
    );
    let images: Vec<&str> = parts
        .iter()
        .filter(|p| p["type"] == "image_url")
        .map(|p| p["image_url"]["url"].as_str().expect("url"))
        .collect();
    assert_eq!(
        images,
        [
            "https://images.example/jars.png".to_string(),
            format!("data:image/png;base64,{PNG_BASE64}")
        ]
    );
}

#[tokio::test]
async fn without_api_key_env_no_authorization_is_sent_and_json_answers_are_json() {
    let server = MockServer::start(vec![Reply::json(
        200,
        completion("```json\n{\"headline\": \"Refill\"}\n```"),
    )])
    .await;
    let mut d = def(
        ExecutorKind::OpenAi,
        "local-llm",
        &format!("{}/v1", server.url),
    );
    d.model = Some("llama3.1".into());
    let ex = executor(&d, 0);
    let out = ex
        .execute(&role(Some("sonnet")), &text_task("Give a headline."))
        .await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.content_type, "application/json");
    assert_eq!(out.output, "{\"headline\": \"Refill\"}");
    assert_eq!(out.usage.cost_usd, 0.0);
    assert_eq!(out.details["executor_name"], "local-llm");
    assert!(!out.details.contains_key("request_id"));
    let r = &server.received()[0];
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.body["model"], "llama3.1",
        "a Claude Code alias gives way to the executor's model"
    );
    assert!(r.body.get("max_tokens").is_none(), "{}", r.body);
    assert_eq!(r.body["messages"][1]["content"], "Give a headline.");
}

#[tokio::test]
async fn a_review_answer_gives_a_verdict() {
    let server = MockServer::start(vec![Reply::json(
        200,
        completion("{\"pass\": false, \"score\": 0.4, \"notes\": \"Too long.\", \"reasons\": [\"length\"], \"labels\": []}"),
    )])
    .await;
    let ex = executor(&gpt_def(&server.url), 0);
    let mut t = text_task("Review the post.");
    t.review = Some(ReviewContext {
        r#loop: "creator_to_reviewer".into(),
        round: 1,
        subject_step: "draft".into(),
        draft: "A very long draft.".into(),
        action: ReviewAction::Review as i32,
        pass_mark: 0.8,
        ..Default::default()
    });
    let out = ex.execute(&role(None), &t).await;
    assert_status(&out, TaskStatus::Succeeded);
    let v = out.verdict.expect("verdict");
    assert!(!v.pass);
    assert_eq!(v.score, 0.4);
    assert_eq!(v.notes, "Too long.");
    let user = server.received()[0].body["messages"][1]["content"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(
        user.contains("(loop creator_to_reviewer, round 1)"),
        "{user}"
    );
    assert!(user.contains("A draft passes at score >= 0.8."), "{user}");
    assert!(user.ends_with("## Draft\n\nA very long draft."), "{user}");
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_exactly_then_retried() {
    let server = MockServer::start(vec![
        Reply::json(
            429,
            error_body("Rate limit reached for requests", "requests"),
        )
        .header("retry-after", "1"),
        ok(),
    ])
    .await;
    let ex = executor(&gpt_def(&server.url), 3);
    let out = ex.execute(&role(None), &task()).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.details["http_attempts"], "2");
    let got = server.received();
    assert_eq!(got.len(), 2);
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 is waited, not the 20 ms backoff: {waited:?}"
    );
}

#[tokio::test]
async fn two_500s_then_success_is_retried() {
    let fail = Reply::json(500, error_body("The server had an error", "server_error"));
    let server = MockServer::start(vec![fail.clone(), fail, ok()]).await;
    let ex = executor(&gpt_def(&server.url), 3);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.details["http_attempts"], "3");
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn a_500_every_time_is_retryable_after_max_retries_plus_one_attempts() {
    let server = MockServer::start(vec![Reply::json(
        503,
        error_body("The engine is currently overloaded", "server_error"),
    )])
    .await;
    let ex = executor(&gpt_def(&server.url), 3);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert_eq!(server.count(), 4);
    assert_eq!(out.details["http_attempts"], "4");
    assert!(
        out.error.starts_with(
            "openai returned 503 after 4 attempts: The engine is currently overloaded"
        ),
        "{}",
        out.error
    );
    assert_eq!(out.usage.executor, "openai");
    assert_eq!(out.usage.model, "gpt-4o-mini");
}

#[tokio::test]
async fn a_400_fails_at_once_with_the_provider_message() {
    let server = MockServer::start(vec![Reply::json(
        400,
        error_body(
            "The model `gpt-9` does not exist or you do not have access to it.",
            "invalid_request_error",
        ),
    )])
    .await;
    let ex = executor(&gpt_def(&server.url), 3);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Failed);
    assert_eq!(server.count(), 1, "a 400 is not retried");
    assert_eq!(out.details["http_attempts"], "1");
    assert!(
        out.error.starts_with(
            "openai refused the request (400): The model `gpt-9` does not exist or you do not have access to it."
        ),
        "{}",
        out.error
    );
}

#[tokio::test]
async fn a_reply_slower_than_the_timeout_is_retryable() {
    let server = MockServer::start(vec![ok().after(Duration::from_secs(2))]).await;
    let mut d = gpt_def(&server.url);
    d.timeout = Duration::from_millis(300);
    let ex = executor(&d, 1);
    let started = std::time::Instant::now();
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert!(
        out.error.contains("openai did not answer within 300ms"),
        "{}",
        out.error
    );
    assert_eq!(out.details["http_attempts"], "2");
    assert_eq!(server.count(), 2, "a timeout is retried like a 5xx");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_gives_up_and_says_when() {
    let server = MockServer::start(vec![
        Reply::json(429, error_body("Rate limit reached", "requests")).header("retry-after", "120"),
    ])
    .await;
    let ex = executor(&gpt_def(&server.url), 3);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert_eq!(server.count(), 1);
    assert!(
        out.error.contains("asked to retry after 120s"),
        "{}",
        out.error
    );
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let url = closed_port_url().await;
    let ex = executor(&gpt_def(&url), 1);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert_eq!(out.details["http_attempts"], "2");
    assert!(
        out.error
            .starts_with("openai could not be reached (2 attempts)"),
        "{}",
        out.error
    );
}

#[tokio::test]
async fn no_choices_is_retryable() {
    let mut body = completion("x");
    body["choices"] = json!([]);
    let server = MockServer::start(vec![Reply::json(200, body)]).await;
    let ex = executor(&gpt_def(&server.url), 3);
    let out = ex.execute(&role(None), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert!(
        out.error.starts_with("openai answered with no choices"),
        "{}",
        out.error
    );
}

#[tokio::test]
async fn a_missing_key_variable_is_an_error_naming_it() {
    test_env();
    let mut d = def(ExecutorKind::OpenAi, "gpt", "http://127.0.0.1:9/v1");
    d.model = Some("gpt-4o-mini".into());
    d.api_key_env = Some(UNSET_VAR.into());
    let e = OpenAiExecutor::new(&d).expect_err("no key");
    assert!(matches!(e, AgentError::MissingApiKey { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(UNSET_VAR), "{text}");
    assert!(text.contains("\"gpt\""), "{text}");
}

#[test]
fn the_role_model_wins_unless_it_is_a_claude_code_alias() {
    let mut d = ExecutorDef::new("gpt", ExecutorKind::OpenAi);
    d.model = Some("gpt-4o-mini".into());
    assert_eq!(model_for(&d, &role(Some("gpt-4.1"))), "gpt-4.1");
    for alias in ["inherit", "sonnet", "opus", "haiku", "Sonnet"] {
        assert_eq!(model_for(&d, &role(Some(alias))), "gpt-4o-mini", "{alias}");
    }
    assert_eq!(model_for(&d, &role(None)), "gpt-4o-mini");
    d.model = None;
    assert_eq!(model_for(&d, &role(Some("opus"))), "");
}

#[tokio::test]
async fn the_key_never_reaches_logs_errors_outputs_or_details() {
    let logs = capture_logs();
    let leak = format!("Incorrect API key provided: {OPENAI_KEY}.");
    let server = MockServer::start(vec![
        ok(),
        Reply::json(400, error_body(&leak, "invalid_request_error")),
        Reply::json(500, error_body(&leak, "server_error")).header("x-request-id", "req_500"),
    ])
    .await;
    let ex = executor(&gpt_def(&server.url), 0);
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
        outs[1].error.contains("Incorrect API key provided: ***."),
        "{}",
        outs[1].error
    );
    // The key did go over the wire, where it belongs.
    assert!(server.received().iter().all(|r| {
        r.header("authorization")
            .is_some_and(|h| h.contains(OPENAI_KEY))
    }));
    for o in &outs {
        assert_absent(OPENAI_KEY, &o.error, "an error");
        assert_absent(OPENAI_KEY, &o.output, "an output");
        assert_absent(OPENAI_KEY, &show(&o.details), "the details");
        assert_absent(OPENAI_KEY, &format!("{o:?}"), "an outcome's Debug");
    }
    assert_absent(OPENAI_KEY, &format!("{ex:?}"), "the executor's Debug");
    let text = logs.text();
    assert!(
        text.contains("model API answered"),
        "the executor logged at all: {text}"
    );
    assert_absent(OPENAI_KEY, &text, "a log line");
}

/// `Retry-After` values no provider should send: a huge number and a far
/// date are taken as a one-day wait (longer than the executor waits: it gives
/// up at once, retryable, saying when), negative and NaN are ignored (the
/// backoff applies). None of them panics the worker.
#[tokio::test]
async fn hostile_retry_after_values_are_clamped_or_ignored() {
    for value in ["1e300", "Fri, 31 Dec 9999 23:59:59 GMT"] {
        let server = MockServer::start(vec![
            Reply::json(429, error_body("Rate limit reached", "requests"))
                .header("retry-after", value),
            ok(),
        ])
        .await;
        let out = executor(&gpt_def(&server.url), 3)
            .execute(&role(None), &task())
            .await;
        assert_status(&out, TaskStatus::Retryable);
        assert_eq!(server.count(), 1, "{value}: not waited for");
        assert!(
            out.error.contains("asked to retry after 86400s"),
            "{value}: {}",
            out.error
        );
    }
    for value in ["-5", "NaN"] {
        let server = MockServer::start(vec![
            Reply::json(429, error_body("Rate limit reached", "requests"))
                .header("retry-after", value),
            ok(),
        ])
        .await;
        let out = executor(&gpt_def(&server.url), 3)
            .execute(&role(None), &task())
            .await;
        assert_status(&out, TaskStatus::Succeeded);
        assert_eq!(out.details["http_attempts"], "2", "{value}: retried");
        assert_eq!(server.count(), 2);
    }
}

/// An answer of 20 MiB, streamed without a length, is read up to 16 MiB and
/// fails the step (not retried: the same request would get the same answer).
#[tokio::test]
async fn an_answer_larger_than_16_mib_fails_without_being_read_whole() {
    let body = huge_json(
        r#"{"model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":""#,
        HUGE,
        r#""}}]}"#,
    );
    let server = StreamingServer::start(200, body, true).await;
    let out = executor(&gpt_def(&server.url), 3)
        .execute(&role(None), &task())
        .await;
    assert_status(&out, TaskStatus::Failed);
    assert!(
        out.error
            .contains("openai answered 200 with a response larger than 16777216 bytes"),
        "{}",
        out.error
    );
    assert_eq!(out.details["http_attempts"], "1");
    assert_eq!(server.count(), 1, "not retried");
    assert!(out.output.is_empty());
}

/// An error answer is bounded too.
#[tokio::test]
async fn a_huge_error_answer_is_not_read_whole() {
    let body = huge_json(r#"{"error":{"message":""#, HUGE, r#""}}"#);
    let server = StreamingServer::start(500, body, true).await;
    let out = executor(&gpt_def(&server.url), 3)
        .execute(&role(None), &task())
        .await;
    assert_status(&out, TaskStatus::Failed);
    assert!(
        out.error
            .contains("answered 500 with a response larger than"),
        "{}",
        out.error
    );
    assert_eq!(server.count(), 1);
}
