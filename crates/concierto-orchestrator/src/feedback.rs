//! Human feedback as runs (seed `feedback_loops.human_to_agent`, DESIGN.md
//! section 7): every `Feedback` taken in (stream FEEDBACK) becomes a run
//! `feedback:<id>` of the workflow `human-feedback`, at FEEDBACK priority so it
//! jumps the work queue:
//!
//! ```text
//!  categorise (the capture's processor, feedback-synthesizer)
//!     └─▶ its answer's `roles` (else the category's, per the seed's table)
//!          └─▶ respond-<role>, one step per specialist
//!  the first respond step done = the first response: its delay is compared
//!  with the `feedback_response_time` SLA (progress_metrics, type sla) in a
//!  run event; the metric itself is published by the feedback router when the
//!  reply is sent (concierto-router)
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_core::config::{Goal, Step, Workflow};
use concierto_core::feedback::{CATEGORISE, FEEDBACK_WORKFLOW, RESPOND_PREFIX, route, run_id};
use concierto_core::grammar::Quantity;
use concierto_core::store::StoreError;
use concierto_proto::v1;

use crate::engine::{Effects, Engine, ms, step_record};
use crate::run::{RunRecord, StepState};

/// Run parameter: when the feedback was received (unix ms).
pub const RECEIVED_AT_MS: &str = "feedback.received_at_ms";

impl Engine {
    /// The workflow feedback runs follow.
    pub(crate) fn feedback_workflow(&self) -> Workflow {
        let processor = self
            .studio
            .feedback_loops
            .human_to_agent
            .first()
            .map(|c| c.processor.clone())
            .unwrap_or_else(|| "feedback-synthesizer".to_string());
        Workflow {
            name: FEEDBACK_WORKFLOW.to_string(),
            description: "Categorise a person's feedback and hand it to that category's specialists.".into(),
            priority: concierto_core::config::Priority::Normal,
            steps: vec![Step {
                id: CATEGORISE.to_string(),
                role: processor,
                task: "Categorise this feedback as brand, technical, growth or other, and name the specialist roles it goes to. \
                       Answer with a JSON object: {\"category\", \"roles\", \"confidence\", \"reason\", \"summary\", \"urgency\"}."
                    .into(),
                inputs: vec!["trigger".into()],
                timeout: Duration::from_secs(600),
                retries: 2,
                review: None,
                labels: Vec::new(),
                context: Vec::new(),
            }],
            on_failure: None,
        }
    }

    /// Starts the run that processes `fb` (once per feedback id).
    pub fn start_feedback(
        &mut self,
        fb: v1::Feedback,
        now: DateTime<Utc>,
    ) -> Result<Effects, StoreError> {
        self.start_feedback_traced(fb, String::new(), now)
    }

    /// Like [`Engine::start_feedback`], in the trace `traceparent` names.
    pub fn start_feedback_traced(
        &mut self,
        fb: v1::Feedback,
        traceparent: String,
        now: DateTime<Utc>,
    ) -> Result<Effects, StoreError> {
        match feedback_start(fb, now) {
            Some(start) => self.start_run_traced(start, traceparent, now),
            None => {
                tracing::warn!("feedback without an id ignored");
                Ok(Effects::default())
            }
        }
    }

    /// After `categorise`: the specialists' steps; after the first response:
    /// its delay against the SLA. Called when a step of a feedback run succeeds.
    pub(crate) fn feedback_step_done(
        &self,
        run: &mut RunRecord,
        step_id: &str,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) {
        if run.workflow != FEEDBACK_WORKFLOW {
            return;
        }
        if step_id == CATEGORISE && !run.steps.iter().any(|s| s.id.starts_with(RESPOND_PREFIX)) {
            let output = run
                .step(CATEGORISE)
                .map(|s| s.output.clone())
                .unwrap_or_default();
            let table = concierto_core::config::keys::routing_table(&self.studio);
            let (category, roles) = route(&output, &table);
            let mut known: Vec<String> = Vec::new();
            for r in roles {
                if self.studio.roles.contains_key(&r) && !known.contains(&r) {
                    known.push(r);
                }
            }
            let roles = if known.is_empty() {
                vec!["studio-orchestrator".to_string()]
            } else {
                known
            };
            for role in &roles {
                let step = Step {
                    id: format!("{RESPOND_PREFIX}{role}"),
                    role: role.clone(),
                    task: format!(
                        "Act on this {category} feedback as the {role}: say what you will change and draft the reply to the person."
                    ),
                    inputs: vec!["trigger".into(), CATEGORISE.into()],
                    timeout: Duration::from_secs(900),
                    retries: 2,
                    review: None,
                    labels: Vec::new(),
                    context: Vec::new(),
                };
                run.steps.push(step_record(&step));
            }
            tracing::info!(run = %run.run_id, %category, roles = ?roles, "feedback routed");
            fx.events.push(run.event(
                Some(CATEGORISE),
                format!("categorised as {category}: routed to {}", roles.join(", ")),
                ms(now),
            ));
            return;
        }
        if step_id.starts_with(RESPOND_PREFIX) {
            let earlier = run
                .steps
                .iter()
                .filter(|s| s.id.starts_with(RESPOND_PREFIX) && s.id != step_id)
                .any(|s| s.state == StepState::Succeeded);
            if earlier {
                return;
            }
            let received: i64 = run
                .params
                .get(RECEIVED_AT_MS)
                .and_then(|v| v.parse().ok())
                .unwrap_or(run.created_ms);
            let took = Duration::from_millis(u64::try_from(ms(now) - received).unwrap_or(0));
            let sla = self.response_sla();
            let verdict = match sla {
                Some(s) if took <= s => format!(" (within the {} SLA)", human(s)),
                Some(s) => format!(" (SLA of {} missed)", human(s)),
                None => String::new(),
            };
            tracing::info!(run = %run.run_id, took_ms = took.as_millis() as u64, sla_ms = sla.map(|s| s.as_millis() as u64), "first response to feedback");
            // The tracker's feedback_response_time is measured by the feedback
            // router, to the moment the reply reaches the person
            // (concierto-router); this event only tells the run's story.
            fx.events.push(run.event(
                Some(step_id),
                format!("first response after {}{verdict}", human(took)),
                ms(now),
            ));
        }
    }

    /// The `feedback_response_time` target, when it is a duration.
    pub fn response_sla(&self) -> Option<Duration> {
        self.studio
            .progress_metrics
            .iter()
            .find(|m| m.name == "feedback_response_time")
            .and_then(|m| match m.goal {
                Goal::Target(t) => match t.value {
                    Quantity::Duration(d) => Some(d),
                    Quantity::Number(_) => None,
                },
                Goal::Improvement(_) => None,
            })
    }
}

/// The run start that processes `fb` (run `feedback:<id>` of the workflow
/// `human-feedback`); `None` for feedback without an id. In a partitioned
/// studio the router of partition 0 publishes it to the run's partition.
pub(crate) fn feedback_start(fb: v1::Feedback, now: DateTime<Utc>) -> Option<v1::StartRun> {
    if fb.feedback_id.is_empty() {
        return None;
    }
    let received = fb
        .received_at
        .as_ref()
        .map(|t| {
            t.seconds
                .saturating_mul(1000)
                .saturating_add(i64::from(t.nanos / 1_000_000))
        })
        .unwrap_or_else(|| ms(now));
    let start = v1::StartRun {
        run_id: run_id(&fb.feedback_id),
        workflow: FEEDBACK_WORKFLOW.to_string(),
        trigger: format!("feedback:{}", channel_name(fb.channel)),
        fire_time: fb.received_at,
        priority: v1::Priority::Feedback as i32,
        params: [(RECEIVED_AT_MS.to_string(), received.to_string())].into(),
        requested_by: format!("feedback:{}", fb.author),
        cause: Some(v1::start_run::Cause::Feedback(v1::RoutedFeedback {
            feedback: Some(fb),
            ..Default::default()
        })),
        ..Default::default()
    };
    Some(start)
}

fn channel_name(c: i32) -> &'static str {
    match v1::FeedbackChannel::try_from(c).unwrap_or(v1::FeedbackChannel::Unspecified) {
        v1::FeedbackChannel::Slack => "slack",
        v1::FeedbackChannel::Email => "email",
        v1::FeedbackChannel::WebForm => "web_form",
        v1::FeedbackChannel::Api => "api",
        v1::FeedbackChannel::Unspecified => "unknown",
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
