//! Campaign analytics become metric samples.
//!
//! Every new or changed analytics record (a `training_data` record that is
//! not feedback, announced as a `ContentItem` of kind `analytics`) publishes
//! one [`MetricSample`] per *performance field* on `metric.<field>`, durably
//! (stream `EVENTS`, as the orchestrator publishes its samples), so the
//! tracker's series and thresholds see them and `on_performance_threshold`
//! (`engagement_rate < 0.05`) fires from real data:
//!
//! - a performance field is a numeric field (a trailing `%` is allowed and
//!   kept as written: `3%` is 3) whose name, lowercased with every character
//!   other than `a-z0-9` made `_`, is one of
//!   [`MEASURES`](concierto_content::learn::MEASURES) (`engagement_rate`,
//!   `ctr`, `conversions`, `roi`, ...), one of [`COUNTS`], or ends in `_rate`;
//! - the sample's time is the record's (`published_at`, `date`, `created_at`,
//!   `timestamp`, `sent_at`) when it has one, else the time it was ingested
//!   (the tracker drops a sample older than its retention, 30 days);
//! - labels `source`, `record` (the record's key, `file#id`) and `item` (the
//!   library id of this version of the record);
//! - message id `metric:<field>:<library id>`: the library id changes with the
//!   record's content, so each version of a record publishes once; a re-read
//!   of an unchanged file publishes nothing (nothing is announced) and a
//!   replayed announcement is dropped by the stream as a duplicate.
//!
//! At most [`MAX_SAMPLES_PER_RECORD`] samples per record and
//! [`MAX_SAMPLES_PER_CYCLE`] per read of a source; what is past them is
//! counted in [`CycleReport::samples_skipped`](crate::CycleReport) and logged.

use concierto_core::subjects::metric_sample;
use concierto_proto::v1::{ContentItem, MetricSample};

/// The item kind the samples come from.
pub const ANALYTICS_KIND: &str = "analytics";
/// Count fields that are performance fields besides the measures and `*_rate`.
pub const COUNTS: &[&str] = &[
    "impressions",
    "clicks",
    "reach",
    "views",
    "likes",
    "shares",
    "comments",
    "saves",
    "engagements",
    "opens",
    "revenue",
];
/// Samples one record publishes at most.
pub const MAX_SAMPLES_PER_RECORD: usize = 16;
/// Samples one read of a source publishes at most.
pub const MAX_SAMPLES_PER_CYCLE: usize = 2000;

/// One sample to publish: its subject, the sample and its message id.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `metric.<field>`.
    pub subject: String,
    /// The sample.
    pub sample: MetricSample,
    /// `metric:<field>:<library id>`.
    pub id: String,
}

/// `Engagement Rate` → `engagement_rate`.
fn metric_name(key: &str) -> String {
    key.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn is_performance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && (concierto_content::learn::MEASURES.contains(&name)
            || COUNTS.contains(&name)
            || name.ends_with("_rate"))
}

fn number(v: &str) -> Option<f64> {
    let v = v.trim().trim_end_matches('%').trim();
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// The samples of one announced item: none unless it is an analytics record.
pub fn samples(item: &ContentItem) -> Vec<Sample> {
    if item.kind != ANALYTICS_KIND {
        return Vec::new();
    }
    let library_id = item
        .features
        .get("library_id")
        .cloned()
        .unwrap_or_else(|| item.item_id.trim_start_matches("sha256:").to_string());
    let record = item.features.get("source_key").cloned().unwrap_or_default();
    let at = item.published_at.or(item.ingested_at);
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (key, value) in item.text.lines().filter_map(|l| l.split_once(": ")) {
        let name = metric_name(key);
        if !is_performance(&name) || !seen.insert(name.clone()) {
            continue;
        }
        let Some(value) = number(value) else {
            continue;
        };
        if out.len() == MAX_SAMPLES_PER_RECORD {
            tracing::warn!(source = %item.source, %record, max = MAX_SAMPLES_PER_RECORD, "an analytics record has more performance fields than are sampled; the rest are left out");
            break;
        }
        let labels = [
            ("source".to_string(), item.source.clone()),
            ("record".to_string(), record.clone()),
            ("item".to_string(), library_id.clone()),
        ]
        .into_iter()
        .collect();
        out.push(Sample {
            subject: metric_sample(&name),
            id: format!("metric:{name}:{library_id}"),
            sample: MetricSample {
                metric: name,
                value,
                at,
                labels,
                unit: String::new(),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(text: &str) -> ContentItem {
        ContentItem {
            item_id: "sha256:abc".into(),
            source: "successful_campaigns".into(),
            kind: ANALYTICS_KIND.into(),
            text: text.into(),
            features: [
                ("library_id".to_string(), "abc".to_string()),
                ("source_key".to_string(), "q1.csv#c1".to_string()),
            ]
            .into_iter()
            .collect(),
            published_at: Some(prost_types::Timestamp {
                seconds: 1_772_323_200,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn performance_fields_become_samples_with_the_records_time_and_labels() {
        let s = samples(&item(
            "campaign_id: c1\nname: Spring\nEngagement Rate: 0.03\nctr: 4%\nimpressions: 1200\nbudget: 500\nopen_rate: n/a",
        ));
        let names: Vec<&str> = s.iter().map(|s| s.sample.metric.as_str()).collect();
        assert_eq!(names, ["engagement_rate", "ctr", "impressions"]);
        let er = &s[0];
        assert_eq!(er.subject, "metric.engagement_rate");
        assert_eq!(er.id, "metric:engagement_rate:abc");
        assert_eq!(er.sample.value, 0.03);
        assert_eq!(er.sample.at.unwrap().seconds, 1_772_323_200);
        assert_eq!(er.sample.labels["record"], "q1.csv#c1");
        assert_eq!(er.sample.labels["source"], "successful_campaigns");
        assert_eq!(s[1].sample.value, 4.0);
    }

    #[test]
    fn other_kinds_give_nothing_and_a_record_is_bounded() {
        let mut other = item("engagement_rate: 0.01");
        other.kind = "feedback".into();
        assert!(samples(&other).is_empty());
        let many: String = (0..40).map(|i| format!("f{i}_rate: {i}\n")).collect();
        assert_eq!(samples(&item(&many)).len(), MAX_SAMPLES_PER_RECORD);
    }
}
