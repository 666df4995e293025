//! The feedback router's state machine: inputs in ([`Engine::on_run`],
//! [`Engine::on_feedback`], [`Engine::on_sent`], [`Engine::tick`]), [`Effects`]
//! out; no I/O, no clock of its own (every input carries `now`).
//!
//! One [`Item`] per piece of feedback, from the moment its run
//! (`feedback:<id>`, workflow `human-feedback`, run by the orchestrator) is
//! seen until its reply is sent:
//!
//! ```text
//!  Waiting ── categorise succeeded ──▶ publish feedback.routed.<category> (once)
//!     │
//!     └─ run ended ─┬─ a respond-<role> step succeeded ─▶ Pending ─ send ─┬─ ok ─▶ Sent (metric, export)
//!                   │                                       ▲             └─ failed ─▶ retry after backoff,
//!                   │                                       └──────────────────────── or Failed after max_attempts
//!                   └─ no response ─▶ Unanswered
//! ```
//!
//! The reply's text is the first succeeded `respond-<role>` step's output in
//! step order (the first specialist the categorisation named), capped at
//! [`MAX_REPLY_CHARS`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_core::feedback::{CATEGORISE, FEEDBACK_WORKFLOW, RESPOND_PREFIX, routing};
use concierto_proto::v1;
use serde::{Deserialize, Serialize};

/// Longest reply sent, in characters (longer answers are cut with `…`).
pub const MAX_REPLY_CHARS: usize = 8_000;
/// Most attempts remembered per item (older ones are dropped).
pub const MAX_ATTEMPTS_KEPT: usize = 20;
/// Longest failure reason kept per attempt.
pub const MAX_ERROR_CHARS: usize = 500;
/// The prefix of feedback run ids.
pub const RUN_PREFIX: &str = "feedback:";

/// Where an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyState {
    /// Its run has not ended yet.
    Waiting,
    /// A reply is to be sent (first try or a retry).
    Pending,
    /// The reply reached its channel.
    Sent,
    /// Every attempt failed, or the channel cannot be answered.
    Failed,
    /// Its run ended without any specialist response.
    Unanswered,
}

impl ReplyState {
    /// As shown in `FeedbackReply.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyState::Waiting => "waiting",
            ReplyState::Pending => "pending",
            ReplyState::Sent => "sent",
            ReplyState::Failed => "failed",
            ReplyState::Unanswered => "unanswered",
        }
    }

    /// True when nothing more happens to the item.
    pub fn done(self) -> bool {
        matches!(
            self,
            ReplyState::Sent | ReplyState::Failed | ReplyState::Unanswered
        )
    }
}

/// One attempt to send a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1, 2, ...
    pub attempt: u32,
    /// When it ended (unix ms).
    pub at_ms: i64,
    /// Why it failed; `None` when sent.
    pub error: Option<String>,
}

/// A piece of feedback as the router follows it (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The feedback id.
    pub feedback_id: String,
    /// The feedback itself, once fetched from the feedback service (encoded
    /// `v1::Feedback`).
    pub feedback: Option<Vec<u8>>,
    /// Where it is.
    pub state: ReplyState,
    /// The category, once categorised.
    pub category: String,
    /// The specialists it was routed to.
    pub roles: Vec<String>,
    /// True once `feedback.routed.<category>` was published.
    pub routed: bool,
    /// The reply's text, once known.
    pub text: String,
    /// Every attempt, oldest first (at most [`MAX_ATTEMPTS_KEPT`]).
    pub attempts: Vec<Attempt>,
    /// How many attempts were made in all.
    pub tries: u32,
    /// When the next attempt is due (unix ms), while pending.
    pub next_attempt_ms: i64,
    /// When the reply was sent (unix ms).
    pub sent_ms: Option<i64>,
    /// When it was first seen (unix ms).
    pub seen_ms: i64,
}

impl Item {
    fn new(feedback_id: &str, now: i64) -> Self {
        Item {
            feedback_id: feedback_id.to_string(),
            feedback: None,
            state: ReplyState::Waiting,
            category: String::new(),
            roles: Vec::new(),
            routed: false,
            text: String::new(),
            attempts: Vec::new(),
            tries: 0,
            next_attempt_ms: 0,
            sent_ms: None,
            seen_ms: now,
        }
    }

    /// The stored feedback, decoded.
    pub fn feedback(&self) -> Option<v1::Feedback> {
        use prost::Message as _;
        self.feedback
            .as_deref()
            .and_then(|b| v1::Feedback::decode(b).ok())
    }

    /// When the feedback was received (unix ms), else when the item was seen.
    pub fn received_ms(&self) -> i64 {
        self.feedback()
            .and_then(|f| f.received_at)
            .map(|t| t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000))
            .unwrap_or(self.seen_ms)
    }

    /// As `FeedbackReply`.
    pub fn to_reply(&self) -> v1::FeedbackReply {
        let fb = self.feedback();
        v1::FeedbackReply {
            feedback_id: self.feedback_id.clone(),
            channel: fb.as_ref().map(|f| f.channel).unwrap_or_default(),
            state: self.state.as_str().to_string(),
            text: self.text.clone(),
            sent_at: self.sent_ms.map(ts),
            attempts: self
                .attempts
                .iter()
                .map(|a| v1::ReplyAttempt {
                    attempt: a.attempt,
                    at: Some(ts(a.at_ms)),
                    sent: a.error.is_none(),
                    error: a.error.clone().unwrap_or_default(),
                })
                .collect(),
            category: category_enum(&self.category) as i32,
            roles: self.roles.clone(),
            run_id: format!("{RUN_PREFIX}{}", self.feedback_id),
            response_seconds: self
                .sent_ms
                .map(|s| (s - self.received_ms()).max(0) as f64 / 1000.0)
                .unwrap_or(0.0),
        }
    }
}

/// A reply to send now.
#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    /// The feedback it answers.
    pub feedback: v1::Feedback,
    /// The text.
    pub text: String,
    /// Which attempt this is (1, 2, ...).
    pub attempt: u32,
}

/// What the actor does for one input.
#[derive(Debug, Default)]
pub struct Effects {
    /// Items to store (before anything else is done).
    pub save: Vec<Item>,
    /// Feedback ids to fetch from the feedback service (`feedback.get`).
    pub fetch_feedback: Vec<String>,
    /// Runs to fetch from the orchestrator (`orchestrator.runs.get`).
    pub fetch_runs: Vec<String>,
    /// `(subject, message)` to publish on `feedback.routed.<category>`.
    pub routed: Vec<(String, v1::RoutedFeedback)>,
    /// Replies to send.
    pub send: Vec<Send>,
    /// Metric samples (`metric.feedback_response_time`), published durably.
    pub metrics: Vec<v1::MetricSample>,
    /// Answered items to export to the `user_feedback` source folder.
    pub export: Vec<Item>,
}

/// How the router retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Most attempts per reply.
    pub max_attempts: u32,
    /// Wait after the first failure; doubled each time.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_secs(5),
            max: Duration::from_secs(30 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` failures (1 → base).
    pub fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.base.saturating_mul(1u32 << shift).min(self.max)
    }
}

/// The router's state: every item not yet done, and the sends in flight.
#[derive(Debug, Default)]
pub struct Engine {
    items: BTreeMap<String, Item>,
    in_flight: BTreeSet<String>,
    fetching: BTreeSet<String>,
    retry: RetryPolicy,
    /// Items done are kept (for `feedback.reply.get`) up to this many.
    keep_done: usize,
}

/// Why one attempt to send a reply failed.
#[derive(Debug, Clone, PartialEq)]
pub struct SendError {
    /// What went wrong, as shown in the item's attempts.
    pub reason: String,
    /// True when no retry can fix it (no bot token, no address, a refusal).
    pub permanent: bool,
    /// How long the channel asked us to wait (Slack's `Retry-After`); the
    /// next attempt waits at least this long, at most [`RetryPolicy::max`].
    pub retry_after: Option<Duration>,
}

impl SendError {
    /// A failure worth another try after the backoff.
    pub fn transient(reason: impl Into<String>) -> Self {
        SendError {
            reason: reason.into(),
            permanent: false,
            retry_after: None,
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(reason: impl Into<String>) -> Self {
        SendError {
            reason: reason.into(),
            permanent: true,
            retry_after: None,
        }
    }

    /// `transient` or `permanent` by `permanent`.
    pub fn new(reason: impl Into<String>, permanent: bool) -> Self {
        SendError {
            reason: reason.into(),
            permanent,
            retry_after: None,
        }
    }
}

/// A send's result: `Ok` sent; `Err` why not.
pub type SendResult = Result<(), SendError>;

impl Engine {
    /// An engine with stored `items` (from the last run of the service).
    pub fn new(items: Vec<Item>, retry: RetryPolicy, keep_done: usize) -> Self {
        Engine {
            items: items
                .into_iter()
                .map(|i| (i.feedback_id.clone(), i))
                .collect(),
            in_flight: BTreeSet::new(),
            fetching: BTreeSet::new(),
            retry,
            keep_done: keep_done.max(1),
        }
    }

    /// One item.
    pub fn item(&self, feedback_id: &str) -> Option<&Item> {
        self.items.get(feedback_id)
    }

    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// A run was seen (an event named it, or a sweep fetched it).
    pub fn on_run(&mut self, run: &v1::Run, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        if run.workflow != FEEDBACK_WORKFLOW {
            return fx;
        }
        let Some(id) = run.run_id.strip_prefix(RUN_PREFIX) else {
            return fx;
        };
        let now_ms = now.timestamp_millis();
        let item = self
            .items
            .entry(id.to_string())
            .or_insert_with(|| Item::new(id, now_ms));
        if item.state.done() || item.state == ReplyState::Pending {
            return fx;
        }
        let before = item.clone();
        if let Some(cat) = run
            .steps
            .iter()
            .find(|s| s.step_id == CATEGORISE && s.state() == v1::StepState::Succeeded)
        {
            item.category = routing(&cat.output).0;
            item.roles = run
                .steps
                .iter()
                .filter_map(|s| s.step_id.strip_prefix(RESPOND_PREFIX))
                .map(str::to_string)
                .collect();
        }
        let ended = matches!(
            run.state(),
            v1::RunState::Succeeded | v1::RunState::Failed | v1::RunState::Cancelled
        );
        if ended {
            let first = run
                .steps
                .iter()
                .filter(|s| s.step_id.starts_with(RESPOND_PREFIX))
                .find(|s| s.state() == v1::StepState::Succeeded && !s.output.trim().is_empty());
            match first {
                Some(step) => {
                    item.text = cap(step.output.trim(), MAX_REPLY_CHARS);
                    item.state = ReplyState::Pending;
                    item.next_attempt_ms = now_ms;
                }
                None => item.state = ReplyState::Unanswered,
            }
        }
        if item.feedback.is_none() && self.fetching.insert(id.to_string()) {
            fx.fetch_feedback.push(id.to_string());
        }
        let changed = *item != before;
        self.advance(id, now, &mut fx);
        if changed
            && !fx.save.iter().any(|i| i.feedback_id == id)
            && let Some(i) = self.items.get(id)
        {
            fx.save.push(i.clone());
        }
        fx
    }

    /// The feedback service answered `feedback.get` (`None`: unknown id).
    pub fn on_feedback(
        &mut self,
        feedback_id: &str,
        fb: Option<v1::Feedback>,
        now: DateTime<Utc>,
    ) -> Effects {
        use prost::Message as _;
        let mut fx = Effects::default();
        self.fetching.remove(feedback_id);
        let Some(item) = self.items.get_mut(feedback_id) else {
            return fx;
        };
        match fb {
            Some(fb) => item.feedback = Some(fb.encode_to_vec()),
            None => {
                // Not stored by the feedback service: nobody to answer.
                if !item.state.done() {
                    item.state = ReplyState::Failed;
                    push_attempt(
                        item,
                        now.timestamp_millis(),
                        Some("the feedback service does not know this feedback".into()),
                    );
                }
            }
        }
        self.advance(feedback_id, now, &mut fx);
        if !fx.save.iter().any(|i| i.feedback_id == feedback_id)
            && let Some(i) = self.items.get(feedback_id)
        {
            fx.save.push(i.clone());
        }
        fx
    }

    /// A send ended.
    pub fn on_sent(
        &mut self,
        feedback_id: &str,
        result: SendResult,
        now: DateTime<Utc>,
    ) -> Effects {
        let mut fx = Effects::default();
        self.in_flight.remove(feedback_id);
        let now_ms = now.timestamp_millis();
        let retry = self.retry;
        let Some(item) = self.items.get_mut(feedback_id) else {
            return fx;
        };
        if item.state != ReplyState::Pending {
            return fx;
        }
        item.tries = item.tries.saturating_add(1);
        match result {
            Ok(()) => {
                push_attempt(item, now_ms, None);
                item.state = ReplyState::Sent;
                item.sent_ms = Some(now_ms);
                let took = (now_ms - item.received_ms()).max(0) as f64 / 1000.0;
                let channel = item
                    .feedback()
                    .map(|f| channel_token(f.channel))
                    .unwrap_or("api");
                fx.metrics.push(v1::MetricSample {
                    metric: "feedback_response_time".into(),
                    value: took,
                    at: Some(ts(now_ms)),
                    labels: [
                        ("feedback".to_string(), item.feedback_id.clone()),
                        ("channel".to_string(), channel.to_string()),
                    ]
                    .into(),
                    unit: "s".into(),
                });
                fx.export.push(item.clone());
                tracing::info!(feedback = %feedback_id, took_s = took, "reply sent");
            }
            Err(SendError {
                reason,
                permanent,
                retry_after,
            }) => {
                push_attempt(item, now_ms, Some(cap(&reason, MAX_ERROR_CHARS)));
                if permanent || item.tries >= retry.max_attempts {
                    item.state = ReplyState::Failed;
                    tracing::warn!(feedback = %feedback_id, tries = item.tries, %reason, "reply given up");
                } else {
                    // The channel's own wait when it named one (bounded by max).
                    let wait = retry
                        .backoff(item.tries)
                        .max(retry_after.unwrap_or_default().min(retry.max));
                    item.next_attempt_ms = now_ms.saturating_add(wait.as_millis() as i64);
                    tracing::info!(feedback = %feedback_id, tries = item.tries, %reason, retry_in_ms = wait.as_millis() as u64, "reply failed; retrying");
                }
            }
        }
        fx.save.push(item.clone());
        self.forget_old();
        fx
    }

    /// Time passed: sends that are due; runs still waiting are looked at again
    /// (at most `max_polls`, oldest first), so a missed event costs a delay,
    /// never an answer.
    pub fn tick(&mut self, now: DateTime<Utc>, max_polls: usize) -> Effects {
        let mut fx = Effects::default();
        let due: Vec<String> = self
            .items
            .values()
            .filter(|i| {
                i.state == ReplyState::Pending && i.next_attempt_ms <= now.timestamp_millis()
            })
            .map(|i| i.feedback_id.clone())
            .collect();
        for id in due {
            self.advance(&id, now, &mut fx);
        }
        let mut waiting: Vec<&Item> = self
            .items
            .values()
            .filter(|i| i.state == ReplyState::Waiting)
            .collect();
        waiting.sort_by_key(|i| i.seen_ms);
        fx.fetch_runs = waiting
            .into_iter()
            .take(max_polls)
            .map(|i| format!("{RUN_PREFIX}{}", i.feedback_id))
            .collect();
        for i in self.items.values() {
            if i.feedback.is_none()
                && !i.state.done()
                && self.fetching.insert(i.feedback_id.clone())
            {
                fx.fetch_feedback.push(i.feedback_id.clone());
            }
        }
        fx
    }

    /// A `feedback.get` failed (the service is down): asked again next tick.
    pub fn fetch_failed(&mut self, feedback_id: &str) {
        self.fetching.remove(feedback_id);
    }

    /// What follows for one item: its routing once categorised and known, its
    /// send once pending, due and known.
    fn advance(&mut self, id: &str, now: DateTime<Utc>, fx: &mut Effects) {
        let Some(item) = self.items.get_mut(id) else {
            return;
        };
        let Some(fb) = item.feedback() else {
            return;
        };
        let mut changed = false;
        if !item.routed && !item.category.is_empty() {
            item.routed = true;
            changed = true;
            let category = item.category.clone();
            fx.routed.push((
                concierto_core::subjects::feedback_routed(&category),
                v1::RoutedFeedback {
                    feedback: Some(fb.clone()),
                    category: category_enum(&category) as i32,
                    roles: item.roles.clone(),
                    confidence: 0.0,
                    reason: String::new(),
                    routed_at: Some(ts(now.timestamp_millis())),
                },
            ));
        }
        if item.state == ReplyState::Pending
            && item.next_attempt_ms <= now.timestamp_millis()
            && self.in_flight.insert(id.to_string())
        {
            fx.send.push(Send {
                feedback: fb,
                text: item.text.clone(),
                attempt: item.tries.saturating_add(1),
            });
        }
        if changed {
            fx.save.push(item.clone());
        }
    }

    /// Drops the oldest items done beyond `keep_done` from memory (they stay
    /// in the store; `feedback.reply.get` then answers from the store).
    fn forget_old(&mut self) {
        let mut done: Vec<(i64, String)> = self
            .items
            .values()
            .filter(|i| i.state.done())
            .map(|i| (i.seen_ms, i.feedback_id.clone()))
            .collect();
        let excess = done.len().saturating_sub(self.keep_done);
        done.sort();
        for (_, id) in done.into_iter().take(excess) {
            self.items.remove(&id);
        }
    }
}

fn push_attempt(item: &mut Item, at_ms: i64, error: Option<String>) {
    let attempt = u32::try_from(item.attempts.len())
        .unwrap_or(u32::MAX)
        .max(item.tries);
    item.attempts.push(Attempt {
        attempt,
        at_ms,
        error,
    });
    if item.attempts.len() > MAX_ATTEMPTS_KEPT {
        item.attempts.remove(0);
    }
}

/// `s` cut to `max` characters (with `…` when cut).
pub fn cap(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A unix-ms time as a protobuf timestamp.
pub fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// The category's enum value.
pub fn category_enum(category: &str) -> v1::FeedbackCategory {
    match category {
        "brand" => v1::FeedbackCategory::Brand,
        "technical" => v1::FeedbackCategory::Technical,
        "growth" => v1::FeedbackCategory::Growth,
        "" => v1::FeedbackCategory::Unspecified,
        _ => v1::FeedbackCategory::Other,
    }
}

/// The channel's token: `slack`, `email`, `web_form`, `api`.
pub fn channel_token(channel: i32) -> &'static str {
    match v1::FeedbackChannel::try_from(channel) {
        Ok(v1::FeedbackChannel::Slack) => "slack",
        Ok(v1::FeedbackChannel::Email) => "email",
        Ok(v1::FeedbackChannel::WebForm) => "web_form",
        _ => "api",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0)
            .single()
            .expect("time")
    }

    fn step(id: &str, state: v1::StepState, output: &str) -> v1::RunStep {
        v1::RunStep {
            step_id: id.into(),
            state: state as i32,
            output: output.into(),
            ..Default::default()
        }
    }

    fn run(state: v1::RunState, steps: Vec<v1::RunStep>) -> v1::Run {
        v1::Run {
            run_id: "feedback:slack-Ev1".into(),
            workflow: FEEDBACK_WORKFLOW.into(),
            state: state as i32,
            steps,
            ..Default::default()
        }
    }

    fn feedback() -> v1::Feedback {
        v1::Feedback {
            feedback_id: "slack-Ev1".into(),
            channel: v1::FeedbackChannel::Slack as i32,
            text: "the banner is off-brand".into(),
            received_at: Some(ts(t(0).timestamp_millis())),
            metadata: [
                ("slack_channel".into(), "C1".into()),
                ("slack_ts".into(), "1.2".into()),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_feedback_run_is_routed_then_answered_with_the_first_response() {
        let mut e = Engine::new(Vec::new(), RetryPolicy::default(), 10);
        let ok = v1::StepState::Succeeded;
        let categorised = run(
            v1::RunState::Running,
            vec![
                step(CATEGORISE, ok, "{\"category\": \"brand\"}"),
                step("respond-brand-guardian", v1::StepState::Dispatched, ""),
            ],
        );
        let fx = e.on_run(&categorised, t(10));
        assert_eq!(fx.fetch_feedback, vec!["slack-Ev1".to_string()]);
        assert!(fx.routed.is_empty(), "routed once the feedback is known");
        let fx = e.on_feedback("slack-Ev1", Some(feedback()), t(11));
        assert_eq!(fx.routed.len(), 1);
        assert_eq!(fx.routed[0].0, "feedback.routed.brand");
        assert_eq!(fx.routed[0].1.roles, vec!["brand-guardian".to_string()]);
        assert!(fx.send.is_empty());

        let ended = run(
            v1::RunState::Succeeded,
            vec![
                step(CATEGORISE, ok, "{\"category\": \"brand\"}"),
                step("respond-brand-guardian", ok, "We will fix the colour."),
                step("respond-creative-director", ok, "Second opinion."),
            ],
        );
        let fx = e.on_run(&ended, t(60));
        assert!(fx.routed.is_empty(), "routed only once");
        assert_eq!(fx.send.len(), 1);
        assert_eq!(fx.send[0].text, "We will fix the colour.");
        assert_eq!(fx.save.last().map(|i| i.state), Some(ReplyState::Pending));
        // A second event for the same run while the send is in flight: no second send.
        assert!(e.on_run(&ended, t(61)).send.is_empty());
        assert!(e.tick(t(62), 10).send.is_empty());

        let fx = e.on_sent("slack-Ev1", Ok(()), t(90));
        assert_eq!(fx.metrics.len(), 1);
        assert_eq!(fx.metrics[0].metric, "feedback_response_time");
        assert_eq!(fx.metrics[0].value, 90.0, "received → sent");
        assert_eq!(fx.export.len(), 1);
        let r = e.item("slack-Ev1").expect("item").to_reply();
        assert_eq!(r.state, "sent");
        assert_eq!(r.response_seconds, 90.0);
        assert_eq!(r.attempts.len(), 1);
        assert!(r.attempts[0].sent);
    }

    #[test]
    fn failed_sends_are_retried_with_backoff_then_given_up() {
        let retry = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(10),
            max: Duration::from_secs(15),
        };
        let mut e = Engine::new(Vec::new(), retry, 10);
        let ok = v1::StepState::Succeeded;
        let ended = run(
            v1::RunState::Succeeded,
            vec![
                step(CATEGORISE, ok, "{\"category\": \"other\"}"),
                step("respond-studio-orchestrator", ok, "Thanks!"),
            ],
        );
        e.on_run(&ended, t(0));
        let fx = e.on_feedback("slack-Ev1", Some(feedback()), t(0));
        assert_eq!(fx.send.len(), 1);
        let fx = e.on_sent(
            "slack-Ev1",
            Err(SendError::transient("Slack answered 503")),
            t(1),
        );
        assert!(fx.metrics.is_empty());
        assert!(e.tick(t(10), 10).send.is_empty(), "not due before 10 s");
        let fx = e.tick(t(11), 10);
        assert_eq!(fx.send.len(), 1);
        assert_eq!(fx.send[0].attempt, 2);
        e.on_sent(
            "slack-Ev1",
            Err(SendError::transient("Slack answered 503")),
            t(12),
        );
        assert!(e.tick(t(26), 10).send.is_empty(), "15 s (capped), not 20");
        assert_eq!(e.tick(t(27), 10).send.len(), 1);
        e.on_sent(
            "slack-Ev1",
            Err(SendError::transient("Slack answered 503")),
            t(28),
        );
        let r = e.item("slack-Ev1").expect("item").to_reply();
        assert_eq!(r.state, "failed");
        assert_eq!(r.attempts.len(), 3);
        assert!(
            r.attempts
                .iter()
                .all(|a| !a.sent && a.error.contains("503"))
        );
        assert!(e.tick(t(10_000), 10).send.is_empty());
    }

    #[test]
    fn a_permanent_failure_is_not_retried_and_a_run_without_answers_is_unanswered() {
        let mut e = Engine::new(Vec::new(), RetryPolicy::default(), 10);
        let ok = v1::StepState::Succeeded;
        e.on_run(
            &run(
                v1::RunState::Succeeded,
                vec![step(CATEGORISE, ok, "{}"), step("respond-x", ok, "Hi")],
            ),
            t(0),
        );
        e.on_feedback("slack-Ev1", Some(feedback()), t(0));
        e.on_sent(
            "slack-Ev1",
            Err(SendError::permanent("no Slack bot token")),
            t(1),
        );
        assert_eq!(
            e.item("slack-Ev1").map(|i| i.state),
            Some(ReplyState::Failed)
        );

        let mut e = Engine::new(Vec::new(), RetryPolicy::default(), 10);
        e.on_run(
            &run(
                v1::RunState::Failed,
                vec![
                    step(CATEGORISE, ok, "{}"),
                    step("respond-x", v1::StepState::Failed, ""),
                ],
            ),
            t(0),
        );
        assert_eq!(
            e.item("slack-Ev1").map(|i| i.state),
            Some(ReplyState::Unanswered)
        );
    }

    #[test]
    fn waiting_runs_are_polled_and_other_workflows_ignored() {
        let mut e = Engine::new(Vec::new(), RetryPolicy::default(), 10);
        let mut other = run(v1::RunState::Succeeded, Vec::new());
        other.workflow = "daily".into();
        assert!(e.on_run(&other, t(0)).save.is_empty());
        assert!(e.is_empty());
        e.on_run(&run(v1::RunState::Running, Vec::new()), t(0));
        let fx = e.tick(t(5), 10);
        assert_eq!(fx.fetch_runs, vec!["feedback:slack-Ev1".to_string()]);
        assert!(e.tick(t(5), 0).fetch_runs.is_empty(), "bounded per tick");
    }

    #[test]
    fn a_channels_retry_after_is_waited_for_within_the_longest_backoff() {
        let retry = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        let mut e = Engine::new(Vec::new(), retry, 10);
        let ok = v1::StepState::Succeeded;
        e.on_run(
            &run(
                v1::RunState::Succeeded,
                vec![step(CATEGORISE, ok, "{}"), step("respond-x", ok, "Hi")],
            ),
            t(0),
        );
        assert_eq!(
            e.on_feedback("slack-Ev1", Some(feedback()), t(0))
                .send
                .len(),
            1
        );
        let limited = |secs| SendError {
            retry_after: Some(Duration::from_secs(secs)),
            ..SendError::transient("Slack answered 429")
        };
        // Asked to wait 20 s (more than the 5 s backoff): 20 s.
        e.on_sent("slack-Ev1", Err(limited(20)), t(0));
        assert!(e.tick(t(19), 10).send.is_empty(), "Retry-After honoured");
        assert_eq!(e.tick(t(20), 10).send.len(), 1);
        // Asked to wait a day: the longest backoff (60 s) instead.
        e.on_sent("slack-Ev1", Err(limited(86_400)), t(20));
        assert!(e.tick(t(79), 10).send.is_empty());
        assert_eq!(e.tick(t(80), 10).send.len(), 1, "bounded by max");
        // Asked to wait less than the backoff: the backoff (5 s · 2²).
        e.on_sent("slack-Ev1", Err(limited(1)), t(80));
        assert!(e.tick(t(99), 10).send.is_empty());
        assert_eq!(e.tick(t(100), 10).send.len(), 1);
    }

    #[test]
    fn long_answers_are_capped() {
        assert_eq!(cap("abcdef", 4), "abc…");
        assert_eq!(cap("abc", 4), "abc");
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_secs(5));
        assert_eq!(p.backoff(2), Duration::from_secs(10));
        assert_eq!(p.backoff(99), Duration::from_secs(30 * 60));
    }
}
