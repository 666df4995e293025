//! The learners, run by the ingest service next to the sources:
//!
//! - the **trend report**, every [`IngestOptions::trend_every`] (a week): the
//!   window's rising terms, palettes and typefaces over the inspiration of
//!   the sources whose extractors include `design_trends` (a source without
//!   an `extractor`/`extract` list runs every default extractor, so it counts;
//!   training data never does) ([`concierto_content::learn::trend_report`]);
//!   handed as context `trend-report` to those sources' `processor`/`indexer`
//!   roles, each once in file order ([`trend_audience`]; or to
//!   [`IngestOptions::trend_roles`] when that override is set), and sampled as
//!   the `pattern_recognition` metric. A studio without such a source has no
//!   trend report;
//! - the **campaign learner**, one per `training_data` source of campaign
//!   analytics, on that source's `training_frequency`: what its high
//!   performers share ([`concierto_content::learn::campaign_insights`]);
//!   handed as context `campaign-insights` to
//!   [`IngestOptions::campaign_roles`] (content-creator) and to the source's
//!   `learner` role.
//!
//! Context goes out as `AgentContext` on `context.<role>` (durable, stream
//! EVENTS); the orchestrator hands the latest of each name to every task of
//! the role. Each report is also kept in the store (tree [`TREE`], keys
//! `learn/trend-report` and `learn/campaign-insights/<source>`) with the time it
//! was computed, so a restart recomputes only when one is due. Each learner
//! runs in its own actor ([`crate::learner_actor`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_bus::{Bus, BusExt};
use concierto_content::learn::{
    CampaignInsights, TrendReport, TrendReportOptions, campaign_insights, trend_report,
};
use concierto_content::{ContentLibrary, Item, Kind, Query};
use concierto_core::config::{ContentSource, SourceKind, Studio, trends};
use concierto_core::store::KvStore;
use concierto_core::subjects;
use concierto_proto::v1::{AgentContext, MetricSample};

use crate::TREE;
use crate::error::IngestError;
use crate::feedback_learn::{FEEDBACK_INSIGHTS, FeedbackInsights, feedback_insights};

/// The context name of the trend report.
pub const TREND_REPORT: &str = "trend-report";
/// The context name of a source's campaign insights.
pub const CAMPAIGN_INSIGHTS: &str = "campaign-insights";
/// The metric the trend report samples.
pub const PATTERN_RECOGNITION: &str = "pattern_recognition";

/// Items read per page from the library.
const PAGE: usize = 1000;

/// Who the trend report is for: the sources it reads and the roles it goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrendAudience {
    /// The sources whose items it reads, in file order.
    pub sources: Vec<String>,
    /// The roles handed it as context, each once, in file order.
    pub roles: Vec<String>,
}

/// The trend report's sources and roles in `studio`
/// ([`concierto_core::config::trends`]): every source that is not training
/// data and whose extractor selection includes `design_trends` (no
/// `extractor`/`extract` list: every default extractor, `design_trends`
/// among them), and their `processor`/`indexer` roles.
pub fn trend_audience(studio: &Studio) -> TrendAudience {
    TrendAudience {
        sources: trends::trend_sources(studio)
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        roles: trends::trend_roles(studio),
    }
}

/// What one learner computes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Learner {
    /// The trend report over the inspiration of its sources, for its roles.
    Trends(TrendAudience),
    /// Campaign insights over one analytics source.
    Campaigns(ContentSource),
    /// Feedback insights over one processed-feedback source.
    Feedback(ContentSource),
}

impl Learner {
    /// Its key in the store (tree [`TREE`]).
    pub(crate) fn key(&self) -> String {
        match self {
            Learner::Trends(_) => format!("learn/{TREND_REPORT}"),
            Learner::Campaigns(s) => format!("learn/{CAMPAIGN_INSIGHTS}/{}", s.name),
            Learner::Feedback(s) => format!("learn/{FEEDBACK_INSIGHTS}/{}", s.name),
        }
    }

    /// Its name (one learner per name runs).
    pub(crate) fn name(&self) -> String {
        match self {
            Learner::Trends(_) => TREND_REPORT.to_string(),
            Learner::Campaigns(s) => format!("{CAMPAIGN_INSIGHTS}:{}", s.name),
            Learner::Feedback(s) => format!("{FEEDBACK_INSIGHTS}:{}", s.name),
        }
    }
}

/// The learners a studio has: the trend report when a source selects
/// `design_trends` ([`trend_audience`]; its roles replaced by `trend_roles`
/// when that is not empty), and per `training_data` source a feedback learner
/// (processed feedback) or a campaign learner (analytics), for the source's
/// `learner` role.
pub(crate) fn learners(studio: &Studio, trend_roles: &[String]) -> Vec<Learner> {
    let mut out = Vec::new();
    let mut audience = trend_audience(studio);
    if !audience.sources.is_empty() {
        if !trend_roles.is_empty() {
            audience.roles = trend_roles.to_vec();
        }
        out.push(Learner::Trends(audience));
    }
    out.extend(
        studio
            .content_sources
            .iter()
            .filter(|s| s.kind == SourceKind::TrainingData)
            .cloned()
            .map(|s| {
                if concierto_core::config::keys::is_feedback_source(&s) {
                    Learner::Feedback(s)
                } else {
                    Learner::Campaigns(s)
                }
            }),
    );
    out
}

/// A stored report: when it was computed and what it said.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<T> {
    computed_ms: i64,
    report: T,
}

/// What a learner computed, ready to hand out.
pub enum Learned {
    /// The trend report.
    Trends(TrendReport),
    /// One source's campaign insights.
    Campaigns {
        /// The training-data source.
        source: String,
        /// What its high performers share.
        insights: CampaignInsights,
    },
    /// One source's feedback insights.
    Feedback {
        /// The training-data source.
        source: String,
        /// What its processed feedback says.
        insights: FeedbackInsights,
    },
}

/// Reads every item of `query` from the library, page by page.
fn all_items(library: &ContentLibrary, query: Query) -> Result<Vec<Item>, IngestError> {
    let mut out = Vec::new();
    loop {
        let page = library
            .search(&query.clone().page(PAGE, out.len()))
            .map_err(IngestError::from)?;
        let n = page.hits.len();
        out.extend(page.hits.into_iter().map(|h| h.item));
        if n < PAGE || out.len() >= page.total {
            return Ok(out);
        }
    }
}

/// Computes one learner's report now (on a blocking thread: it reads the library).
pub(crate) async fn compute(
    library: Arc<ContentLibrary>,
    learner: Learner,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<Learned, IngestError> {
    tokio::task::spawn_blocking(move || {
        let now_ms = now.timestamp_millis();
        match learner {
            Learner::Trends(audience) => {
                let opts = TrendReportOptions {
                    window,
                    ..TrendReportOptions::default()
                };
                let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
                let since = now_ms.saturating_sub(window_ms.saturating_mul(2));
                let mut items = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for source in &audience.sources {
                    let query = Query::browse()
                        .source(source)
                        .between(Some(since), Some(now_ms));
                    items.extend(
                        all_items(&library, query)?
                            .into_iter()
                            .filter(|i| seen.insert(i.id.clone())),
                    );
                }
                Ok(Learned::Trends(trend_report(&items, now_ms, &opts)))
            }
            Learner::Campaigns(source) => {
                let items = all_items(
                    &library,
                    Query::browse().kind(Kind::Analytics).source(&source.name),
                )?;
                Ok(Learned::Campaigns {
                    source: source.name,
                    insights: campaign_insights(&items, now_ms),
                })
            }
            Learner::Feedback(source) => {
                let items = all_items(
                    &library,
                    Query::browse().kind(Kind::Feedback).source(&source.name),
                )?;
                Ok(Learned::Feedback {
                    source: source.name,
                    insights: feedback_insights(&items, now_ms),
                })
            }
        }
    })
    .await
    .map_err(|e| IngestError::Blocking(format!("learner: {e}")))?
}

/// Hands a report out: stored, published as context to its roles (those the
/// studio has), and for the trend report sampled as `pattern_recognition`.
pub(crate) async fn hand_out(
    bus: &Arc<dyn Bus>,
    store: &Arc<dyn KvStore>,
    studio: &Studio,
    learned: &Learned,
    roles: &[String],
    now: DateTime<Utc>,
) -> Result<(), IngestError> {
    let now_ms = now.timestamp_millis();
    let (key, name, markdown, stored) = match learned {
        Learned::Trends(r) => (
            format!("learn/{TREND_REPORT}"),
            TREND_REPORT.to_string(),
            r.to_markdown(),
            serde_json::to_vec(&Stored {
                computed_ms: now_ms,
                report: r,
            }),
        ),
        Learned::Campaigns { source, insights } => (
            format!("learn/{CAMPAIGN_INSIGHTS}/{source}"),
            format!("{CAMPAIGN_INSIGHTS}:{source}"),
            insights.to_markdown(),
            serde_json::to_vec(&Stored {
                computed_ms: now_ms,
                report: insights,
            }),
        ),
        Learned::Feedback { source, insights } => (
            format!("learn/{FEEDBACK_INSIGHTS}/{source}"),
            format!("{FEEDBACK_INSIGHTS}:{source}"),
            insights.to_markdown(),
            serde_json::to_vec(&Stored {
                computed_ms: now_ms,
                report: insights,
            }),
        ),
    };
    let stored = stored.map_err(|e| IngestError::Blocking(format!("encoding a report: {e}")))?;
    for role in roles {
        if !studio.roles.contains_key(role) {
            tracing::debug!(%role, context = %name, "no such role in the studio; context not sent");
            continue;
        }
        let msg = AgentContext {
            role: role.clone(),
            name: name.clone(),
            content: markdown.clone(),
            content_type: "text/markdown".into(),
            at: Some(concierto_proto::time::timestamp(now.into())),
            source: "ingest:learner".into(),
        };
        bus.publish_durable_proto(
            &subjects::context(role),
            &msg,
            &format!("context:{role}/{name}@{now_ms}"),
        )
        .await?;
    }
    if let Learned::Trends(r) = learned {
        let sample = MetricSample {
            metric: PATTERN_RECOGNITION.into(),
            value: r.pattern_recognition,
            at: Some(concierto_proto::time::timestamp(now.into())),
            labels: [
                ("items".to_string(), r.items_current.to_string()),
                ("source".to_string(), "ingest:learner".to_string()),
            ]
            .into_iter()
            .collect(),
            unit: "ratio".into(),
        };
        bus.publish_durable_proto(
            &subjects::metric_sample(PATTERN_RECOGNITION),
            &sample,
            &format!("{PATTERN_RECOGNITION}@{now_ms}"),
        )
        .await?;
    }
    // Stored last: a report whose hand-out failed is computed and sent again.
    store.put(TREE, key.as_bytes(), &stored)?;
    Ok(())
}

/// The stored trend report, when one was computed.
pub fn stored_trend_report(store: &Arc<dyn KvStore>) -> Option<(i64, TrendReport)> {
    let bytes = store
        .get(TREE, format!("learn/{TREND_REPORT}").as_bytes())
        .ok()
        .flatten()?;
    let s: Stored<TrendReport> = serde_json::from_slice(&bytes).ok()?;
    Some((s.computed_ms, s.report))
}

/// A source's stored campaign insights, when computed.
pub fn stored_campaign_insights(
    store: &Arc<dyn KvStore>,
    source: &str,
) -> Option<(i64, CampaignInsights)> {
    let bytes = store
        .get(
            TREE,
            format!("learn/{CAMPAIGN_INSIGHTS}/{source}").as_bytes(),
        )
        .ok()
        .flatten()?;
    let s: Stored<CampaignInsights> = serde_json::from_slice(&bytes).ok()?;
    Some((s.computed_ms, s.report))
}

#[cfg(test)]
mod tests {
    use concierto_content::extract::Extractors;
    use concierto_core::config::{ContentSource, Refresh, SourceKind, trends};

    #[test]
    fn the_trend_sources_are_those_whose_extractors_count_in_the_report() {
        for list in [
            vec![],
            vec!["design_trends"],
            vec![" Design_Trends ", "colour_palettes"],
            vec!["colour_palettes", "typography_patterns"],
            vec!["visual_concepts"],
        ] {
            let source = ContentSource {
                name: "s".into(),
                group: "external_inspiration".into(),
                kind: SourceKind::WebScraper,
                location: "https://example.com/feed".into(),
                role: "trend-researcher".into(),
                refresh: Refresh::Continuous,
                extract: list.iter().map(|x| x.to_string()).collect(),
                allow_hosts: Vec::new(),
                allow_private_networks: false,
                enabled: true,
            };
            assert_eq!(
                trends::selects_design_trends(&source),
                Extractors::from_names(&source.extract).trends,
                "{list:?}"
            );
        }
    }
}
