//! Live updates: bus subscriptions feed a broadcast hub, and `GET /events`
//! streams it to each browser as server-sent events (`run`, `gate`, `metric`,
//! `heartbeat`, each a small JSON object). Pages mark the parts that an event
//! kind refreshes (`data-live="run gate"`); the script reloads those parts.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use concierto_bus::{BusExt, ProtoMessage, TypedSubscription};
use concierto_core::subjects;
use concierto_proto::v1;
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast;

use crate::auth::Authed;
use crate::html;
use crate::security::{self, StreamSlot};
use crate::{DashboardError, DashboardState};

/// One event for the browsers.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// `run`, `gate`, `metric` or `heartbeat` (the SSE event name).
    pub kind: &'static str,
    /// A JSON object (the SSE data).
    pub data: serde_json::Value,
}

/// A threshold crossing kept for the overview page.
#[derive(Debug, Clone)]
pub(crate) struct Crossing {
    pub metric: String,
    pub predicate: String,
    pub value: f64,
    pub entered: bool,
    pub at: Option<prost_types::Timestamp>,
}

fn run_event(e: &v1::RunEvent) -> LiveEvent {
    LiveEvent {
        kind: "run",
        data: json!({
            "run_id": e.run_id,
            "workflow": e.workflow,
            "seq": e.seq,
            "run_state": e.run_state().as_str_name(),
            "step_id": e.step_id,
            "step_state": e.step_state().as_str_name(),
            "message": e.message,
        }),
    }
}

fn gate_event(g: &v1::Gate) -> LiveEvent {
    let r = g.request.clone().unwrap_or_default();
    LiveEvent {
        kind: "gate",
        data: json!({
            "gate_id": r.gate_id,
            "gate": r.gate,
            "run_id": r.run_id,
            "state": g.state().as_str_name(),
        }),
    }
}

fn metric_event(t: &v1::ThresholdCrossed) -> LiveEvent {
    LiveEvent {
        kind: "metric",
        data: json!({
            "metric": t.metric,
            "predicate": t.predicate,
            "value": t.value,
            "entered": t.entered,
        }),
    }
}

fn heartbeat_event(h: &v1::AgentHeartbeat) -> LiveEvent {
    LiveEvent {
        kind: "heartbeat",
        data: json!({
            "role": h.role,
            "worker_id": h.worker_id,
            "in_flight": h.in_flight,
        }),
    }
}

/// Forwards every message of `sub` to the hub (after `also`) until closing.
fn forward<M: ProtoMessage>(
    state: &DashboardState,
    mut sub: TypedSubscription<M>,
    to_event: fn(&M) -> LiveEvent,
    also: fn(&DashboardState, &M),
) {
    let state = state.clone();
    let mut closing = state.inner.closing.subscribe();
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = closing.wait_for(|c| *c) => break,
                m = sub.next() => m,
            };
            let Some((m, _)) = msg else { break };
            also(&state, &m);
            state.publish(to_event(&m));
        }
    });
}

fn nothing<M>(_: &DashboardState, _: &M) {}

fn keep_crossing(state: &DashboardState, t: &v1::ThresholdCrossed) {
    let keep = state.opts().keep_thresholds;
    if let Ok(mut q) = state.inner.thresholds.lock() {
        q.push_front(Crossing {
            metric: t.metric.clone(),
            predicate: t.predicate.clone(),
            value: t.value,
            entered: t.entered,
            at: t.at,
        });
        q.truncate(keep);
    }
}

/// The threshold crossings seen since start, newest first.
pub(crate) fn crossings(state: &DashboardState) -> Vec<Crossing> {
    state
        .inner
        .thresholds
        .lock()
        .map(|q| q.iter().cloned().collect())
        .unwrap_or_default()
}

pub(crate) async fn watch_bus(state: DashboardState) -> Result<(), DashboardError> {
    let bus = state.inner.bus.clone();
    let runs = bus
        .subscribe_proto::<v1::RunEvent>(subjects::RUN_EVENTS)
        .await?;
    let gates = bus
        .subscribe_proto::<v1::Gate>(subjects::GATE_EVENTS)
        .await?;
    let metrics = bus
        .subscribe_proto::<v1::ThresholdCrossed>(subjects::METRIC_EVENTS)
        .await?;
    let beats = bus
        .subscribe_proto::<v1::AgentHeartbeat>(subjects::HEARTBEATS)
        .await?;
    forward(&state, runs, run_event, nothing);
    forward(&state, gates, gate_event, nothing);
    forward(&state, metrics, metric_event, keep_crossing);
    forward(&state, beats, heartbeat_event, nothing);
    let mut signouts = bus.subscribe(subjects::DASHBOARD_SIGNOUT).await?;
    let mut closing = state.inner.closing.subscribe();
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = closing.wait_for(|c| *c) => break,
                m = signouts.next() => m,
            };
            let Some(m) = msg else { break };
            crate::auth::signed_out_elsewhere(&state, &m.payload);
        }
    });
    Ok(())
}

/// `GET /events`: the hub as server-sent events, until the browser leaves or
/// the dashboard stops; 429 when the session, or the dashboard, has its most
/// streams open.
pub(crate) async fn events(State(state): State<DashboardState>, who: Authed) -> Response {
    let slot = match security::open_stream(&state, who.session_id()) {
        Ok(slot) => slot,
        Err(why) => return security::too_many_streams(why),
    };
    Sse::new(stream(state, &who, slot))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The events of one browser; `slot` is held as long as the stream lives.
fn stream(
    state: DashboardState,
    who: &Authed,
    slot: StreamSlot,
) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    let rx = state.inner.live.subscribe();
    let closing = state.inner.closing.subscribe();
    let hello = Event::default().event("hello").data("{}");
    let session = who.session_cookie().to_string();
    futures::stream::unfold(
        (Some(hello), rx, closing, slot),
        move |(first, mut rx, mut closing, slot)| {
            let (state, session) = (state.clone(), session.clone());
            async move {
                if let Some(e) = first {
                    return Some((Ok(e), (None, rx, closing, slot)));
                }
                // Signed out or expired: the stream ends with the session.
                if *closing.borrow() || !crate::auth::session_live(&state, &session) {
                    return None;
                }
                let next = tokio::select! {
                    _ = closing.wait_for(|c| *c) => return None,
                    n = rx.recv() => n,
                };
                let e = match next {
                    Ok(ev) => Event::default().event(ev.kind).data(ev.data.to_string()),
                    // A slow browser missed some: tell it to refresh everything.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        Event::default().event("lagged").data("{}")
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((Ok(e), (None, rx, closing, slot)))
            }
        },
    )
}

/// The overview's list of threshold crossings.
pub(crate) fn crossings_html(state: &DashboardState) -> String {
    let list = crossings(state);
    if list.is_empty() {
        return "<p class=\"muted\">No threshold crossed since the dashboard started.</p>".into();
    }
    let rows: String = list
        .iter()
        .map(|c| {
            format!(
                "<li class=\"{cls}\">{when} <strong>{metric}</strong> {what} <code>{pred}</code> at {value}</li>",
                cls = if c.entered { "entered" } else { "left" },
                when = html::when(c.at.as_ref()),
                metric = html::esc(&c.metric),
                what = if c.entered { "crossed" } else { "back within" },
                pred = html::esc(&c.predicate),
                value = html::num(c.value),
            )
        })
        .collect();
    format!("<ul class=\"crossings\">{rows}</ul>")
}
