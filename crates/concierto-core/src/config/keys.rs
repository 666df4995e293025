//! Seed keys that act at run time and what they may say: the feedback routing
//! table (`feedback_capture.routing`), the capture channels, the extractor
//! names of a source's `extractor`/`extract`, the metric `type`s, and the
//! checks of a trigger's `agents` against its workflow.
//!
//! ```yaml
//! feedback_loops:
//!   human_to_agent:
//!     - feedback_capture:
//!         channels: ["slack", "email", "web_form"]   # a channel not listed answers 404
//!         processor: feedback-synthesizer
//!         action: "route_to_specialists"
//!         routing:                                   # optional; the seed's table by default
//!           brand: [brand-guardian, creative-director]
//!           technical: [backend-architect, test-writer-fixer]
//!           growth: [growth-hacker, analytics-reporter]
//!           other: [studio-orchestrator]
//! ```

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::model::Studio;
use super::spans::{child, item};
use super::walk::Walker;

/// The channels `feedback_capture.channels` may list. `api` (the admin API,
/// authenticated by admin tokens) is always open, listed or not.
pub const CAPTURE_CHANNELS: &[&str] = &["slack", "email", "web_form", "api"];

/// The extractors a source's `extractor`/`extract` may name, with what each
/// does to an ingested item.
pub const KNOWN_EXTRACTORS: &[(&str, &str)] = &[
    (
        "design_trends",
        "the source's items count in the weekly trend report, which goes to the processors of the sources selecting it",
    ),
    (
        "color_palettes",
        "dominant colours of each image (k-means in CIELAB)",
    ),
    (
        "colour_palettes",
        "dominant colours of each image (k-means in CIELAB)",
    ),
    (
        "typography_patterns",
        "font families, sizes and weights of each page or stylesheet",
    ),
    (
        "visual_concepts",
        "visual concepts (styles, colour moods, layouts) from text, alt texts and file names",
    ),
    (
        "creative_techniques",
        "creative techniques (collage, risograph, isometric, ...) from text and alt texts",
    ),
    (
        "industry_insights",
        "sentences of the item's text that carry a market signal (launches, funding, growth figures, shifts), kept in its notes",
    ),
];

/// The metric `type`s the studio knows (see
/// [`super::reports::type_meaning`] for what each means).
pub const KNOWN_METRIC_TYPES: &[&str] = &[
    "content_pieces",
    "brand_alignment",
    "capacity",
    "sla",
    "percentage",
    "ratio",
    "rate",
    "count",
    "duration",
    "score",
];

/// Most categories a routing table may have.
pub const MAX_ROUTES: usize = 32;
/// Most roles one category may be routed to.
pub const MAX_ROUTE_ROLES: usize = 16;

/// The seed's routing table (its `FeedbackProcessor`): category → roles.
pub fn default_routing() -> IndexMap<String, Vec<String>> {
    crate::feedback::CATEGORIES
        .iter()
        .map(|c| {
            (
                (*c).to_string(),
                crate::feedback::roles_for(c)
                    .iter()
                    .map(|r| (*r).to_string())
                    .collect(),
            )
        })
        .collect()
}

/// The studio's routing table: its first `feedback_capture`'s `routing`, or
/// the seed's table when it has none.
pub fn routing_table(studio: &Studio) -> IndexMap<String, Vec<String>> {
    studio
        .feedback_loops
        .human_to_agent
        .first()
        .map(|c| c.routing.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(default_routing)
}

/// Whether feedback from `channel` (`slack`, `email`, `web_form`, `api`) is
/// taken: `api` always; the others when a `feedback_capture` lists them, or
/// when the studio has no `feedback_capture` at all.
pub fn channel_on(studio: &Studio, channel: &str) -> bool {
    let captures = &studio.feedback_loops.human_to_agent;
    channel == "api"
        || captures.is_empty()
        || captures
            .iter()
            .any(|c| c.channels.iter().any(|x| x == channel))
}

/// The sentence a refused channel is answered with.
pub fn channel_off_message(channel: &str) -> String {
    format!(
        "the {channel} feedback channel is off: feedback_loops.human_to_agent.feedback_capture.channels does not list {channel:?}"
    )
}

/// Parses `routing` of the capture map `f` at `p` (roles are checked by [`check`]).
pub(crate) fn parse_routing(
    w: &mut Walker<'_>,
    f: &Map<String, Value>,
    p: &str,
) -> IndexMap<String, Vec<String>> {
    let rp = child(p, "routing");
    let Some(m) = w.map(f.get("routing"), &rp) else {
        return default_routing();
    };
    if m.len() > MAX_ROUTES {
        w.error(
            &rp,
            format!("at most {MAX_ROUTES} categories, found {}", m.len()),
        );
        return default_routing();
    }
    let mut out = IndexMap::new();
    for category in m.keys() {
        let roles = w.strings(m, category, &rp, true);
        if roles.len() > MAX_ROUTE_ROLES {
            w.error(
                &child(&rp, category),
                format!("at most {MAX_ROUTE_ROLES} roles, found {}", roles.len()),
            );
        }
        out.insert(category.to_ascii_lowercase(), roles);
    }
    if !out.contains_key("other") {
        w.warning(
            &rp,
            "no `other` category: feedback the processor cannot place goes to studio-orchestrator",
        );
    }
    out
}

/// Cross-checks of the keys above: routing roles exist, extractor names and
/// metric types are known (unknown: a warning).
/// `trigger_paths` are the triggers' key paths in file order.
pub(crate) fn check(w: &mut Walker<'_>, s: &Studio, trigger_paths: &[String]) {
    for (i, c) in s.feedback_loops.human_to_agent.iter().enumerate() {
        let rp = child(
            &child(&item("feedback_loops.human_to_agent", i), &c.name),
            "routing",
        );
        for (category, roles) in &c.routing {
            for (j, r) in roles.iter().enumerate() {
                if !s.roles.contains_key(r) && w.spans.has(&rp) {
                    w.error(
                        &item(&child(&rp, category), j),
                        format!(
                            "unknown role {r:?}: no role file in the agents folders defines it"
                        ),
                    );
                }
            }
        }
    }
    for c in &s.content_sources {
        for x in &c.extract {
            if !KNOWN_EXTRACTORS.iter().any(|(k, _)| k == x) {
                w.error(
                    &format!("content_sources.{}", c.group),
                    format!(
                        "source {:?}: unknown extractor {x:?}; expected one of {}",
                        c.name,
                        KNOWN_EXTRACTORS
                            .iter()
                            .map(|(k, _)| *k)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
    for m in &s.progress_metrics {
        if let Some(kind) = &m.kind
            && !KNOWN_METRIC_TYPES.contains(&kind.to_ascii_lowercase().as_str())
        {
            w.warning(
                &format!("progress_metrics.{}", m.group),
                format!(
                    "metric {:?}: unknown type {kind:?}, reported as a plain measured value; known types: {}",
                    m.name,
                    KNOWN_METRIC_TYPES.join(", ")
                ),
            );
        }
    }
    // A trigger's `agents` are checked in load.rs (each listed role must have
    // a step of the workflow); steps by unlisted roles still run, and
    // `validate --explain` names them (no warning: the seed's own lists leave
    // out trend-researcher and analytics-reporter).
    let _ = trigger_paths;
}

/// Whether a `training_data` source holds processed feedback (its name or
/// folder says `feedback`, as the seed's `user_feedback: /feedback/processed/`):
/// its learner gets feedback insights, not campaign insights.
pub fn is_feedback_source(c: &super::model::ContentSource) -> bool {
    let says = |x: &str| x.to_ascii_lowercase().contains("feedback");
    c.kind == super::model::SourceKind::TrainingData && (says(&c.name) || says(&c.location))
}
