//! W3C trace context (`traceparent`) across the bus, so one workflow run is one
//! trace across services.
//!
//! A message handler makes its span, [`follow`]s the message's `traceparent`
//! (a malformed or missing one leaves the span a new root), and works inside
//! it; whatever it publishes then carries the span's context, stamped by the
//! bus observer (see `concierto_bus::observe`) or set explicitly with
//! [`span_traceparent`].

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use concierto_bus::TRACEPARENT;

/// The `traceparent` of `cx`'s span, or `None` when it has no valid span.
pub fn traceparent_of(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The context a `traceparent` names; empty (no span) when it is missing or
/// malformed.
pub fn context_of(traceparent: Option<&str>) -> Context {
    let Some(value) = traceparent.map(str::trim).filter(|v| well_formed(v)) else {
        return Context::new();
    };
    let carrier = HashMap::from([(TRACEPARENT.to_string(), value.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// W3C Trace Context's form (the propagator alone accepts short ids):
/// `version-traceid-parentid-flags`, lowercase hex of 2, 32, 16 and 2 digits,
/// version not `ff`, ids not all zero; version `00` has exactly four fields.
fn well_formed(value: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let fields: Vec<&str> = value.split('-').collect();
    let [version, trace_id, parent_id, flags] = match fields.as_slice() {
        [v, t, p, f] => [*v, *t, *p, *f],
        [v, t, p, f, ..] if *v != "00" => [*v, *t, *p, *f],
        _ => return false,
    };
    hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2)
}

/// Makes `span` a child of the span `traceparent` names. Does nothing when the
/// value is missing or malformed (the span stays where it is, a new root if it
/// has no parent), or when spans are not exported. Call it before the span is
/// first entered.
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    let cx = context_of(traceparent);
    if cx.span().span_context().is_valid() {
        // Fails only without the OpenTelemetry layer or on a span already started:
        // either way there is nothing to link.
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` of `span`, for the messages published on its behalf;
/// `None` when spans are not exported (no OpenTelemetry layer) or the span is
/// disabled.
pub fn span_traceparent(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    traceparent_of(&span.context())
}

/// The bus observer: stamps the current span's context and counts messages.
pub(crate) struct BusTelemetry;

impl concierto_bus::observe::BusObserver for BusTelemetry {
    fn traceparent(&self) -> Option<String> {
        span_traceparent(&tracing::Span::current())
    }

    fn published(&self, kind: &str) {
        crate::metrics::message_published(kind);
    }

    fn received(&self, kind: &str) {
        crate::metrics::message_received(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips() {
        let cx = context_of(Some(TP));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid());
        assert!(sc.is_remote());
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(sc.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert_eq!(traceparent_of(&cx).as_deref(), Some(TP));
    }

    #[test]
    fn a_context_made_here_injects_its_ids() {
        let sc = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(sc);
        assert_eq!(
            traceparent_of(&cx).as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            "00-1-2-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            let cx = context_of(Some(bad));
            assert!(
                !cx.span().span_context().is_valid(),
                "{bad:?} must not give a parent"
            );
            assert_eq!(traceparent_of(&cx), None);
            // Following it leaves a span alone and does not panic.
            follow(&tracing::info_span!("test.span"), Some(bad));
        }
        assert!(!context_of(None).span().span_context().is_valid());
    }
}
