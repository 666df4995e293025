//! `feedback.list` (`ListFeedbackRequest` → `ListFeedbackResponse`): the
//! feedback taken in, newest first, each with what its run (`feedback:<id>`,
//! asked of the orchestrator) says about its routing and first response. What
//! the admin API's `ListFeedback` answers.

use std::sync::Arc;
use std::time::Duration;

use concierto_bus::{Bus, BusExt, Outgoing, encode};
use concierto_core::feedback::{CATEGORISE, RESPOND_PREFIX, routing, run_id};
use concierto_core::store::KvStore;
use concierto_core::structured;
use concierto_core::subjects;
use concierto_proto::v1;
use futures::StreamExt as _;

use crate::index::list_page;

/// What a feedback run says about its feedback, for `ListFeedback`: the
/// routing and the first response, from the stored run.
pub fn entry_of(run: &v1::Run, fb: v1::Feedback) -> v1::FeedbackEntry {
    let categorise = run.steps.iter().find(|s| s.step_id == CATEGORISE);
    let routed = categorise
        .filter(|s| s.state() == v1::StepState::Succeeded)
        .map(|s| {
            let (category, _) = routing(&s.output);
            // The roles the orchestrator really routed to: its respond steps.
            let roles: Vec<String> = run
                .steps
                .iter()
                .filter_map(|x| x.step_id.strip_prefix(RESPOND_PREFIX))
                .map(str::to_string)
                .collect();
            let m = structured::json_object(&s.output).unwrap_or_default();
            v1::RoutedFeedback {
                feedback: None,
                category: match category.as_str() {
                    "brand" => v1::FeedbackCategory::Brand,
                    "technical" => v1::FeedbackCategory::Technical,
                    "growth" => v1::FeedbackCategory::Growth,
                    _ => v1::FeedbackCategory::Other,
                } as i32,
                roles,
                confidence: m.get("confidence").and_then(|v| v.as_f64()).unwrap_or(0.0),
                reason: m
                    .get("reason")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                routed_at: s.finished_at,
            }
        });
    let first_response_at = run
        .steps
        .iter()
        .filter(|s| s.step_id.starts_with(RESPOND_PREFIX) && s.state() == v1::StepState::Succeeded)
        .filter_map(|s| s.finished_at)
        .min_by_key(|t| (t.seconds, t.nanos));
    v1::FeedbackEntry {
        feedback: Some(fb),
        routed,
        first_response_at,
    }
}

/// One page of entries; a category filter is applied after routing is known.
pub async fn list_entries(
    bus: &Arc<dyn Bus>,
    store: &Arc<dyn KvStore>,
    req: &v1::ListFeedbackRequest,
    timeout: Duration,
) -> Result<v1::ListFeedbackResponse, crate::FeedbackError> {
    let size = match req.page_size {
        0 => 50,
        n => (n as usize).min(200),
    };
    let (page, next) = {
        let store = store.clone();
        let token = req.page_token.clone();
        tokio::task::spawn_blocking(move || list_page(store.as_ref(), size, &token))
            .await
            .map_err(|e| crate::FeedbackError::Internal(format!("listing feedback: {e}")))??
    };
    // The runs are looked up concurrently, under one deadline for the page.
    let lookups = page.into_iter().map(|fb| {
        let bus = bus.clone();
        async move {
            let run = bus
                .request_proto::<_, v1::GetRunResponse>(
                    subjects::ORCHESTRATOR_GET_RUN,
                    &v1::GetRunRequest {
                        run_id: run_id(&fb.feedback_id),
                    },
                    timeout,
                )
                .await;
            (fb, run)
        }
    });
    let looked: Vec<_> = futures::stream::iter(lookups).buffered(16).collect().await;
    let mut entries = Vec::with_capacity(looked.len());
    for (fb, run) in looked {
        let entry = match run {
            Ok(v1::GetRunResponse { run: Some(run) }) => entry_of(&run, fb),
            Ok(_) => v1::FeedbackEntry {
                feedback: Some(fb),
                routed: None,
                first_response_at: None,
            },
            Err(e @ concierto_bus::BusError::NoResponders(_)) => {
                return Err(crate::FeedbackError::Bus(e));
            }
            Err(e) => {
                tracing::warn!(feedback = %fb.feedback_id, error = %e, "looking up a feedback run failed");
                v1::FeedbackEntry {
                    feedback: Some(fb),
                    routed: None,
                    first_response_at: None,
                }
            }
        };
        let keep = req.category == 0
            || entry
                .routed
                .as_ref()
                .is_some_and(|r| r.category == req.category);
        if keep {
            entries.push(entry);
        }
    }
    Ok(v1::ListFeedbackResponse {
        entries,
        next_page_token: next,
    })
}

/// Answers `feedback.list` requests until the subscription ends.
pub async fn serve_list(bus: Arc<dyn Bus>, store: Arc<dyn KvStore>, timeout: Duration) {
    let mut sub = match bus
        .queue_subscribe_proto::<v1::ListFeedbackRequest>(subjects::FEEDBACK_LIST, "feedback")
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve feedback.list");
            return;
        }
    };
    while let Some((req, msg)) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let out = match list_entries(&bus, &store, &req, timeout).await {
            Ok(r) => encode(&r),
            Err(e) => Outgoing::new(Vec::new())
                .header(subjects::ERROR_HEADER, format!("{}: {e}", e.code())),
        };
        if let Err(e) = bus.respond(&reply, out).await {
            tracing::warn!(error = %e, "answering feedback.list failed");
        }
    }
}
