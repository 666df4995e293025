//! Deliverables: when a run succeeds (after its gates), one `v1::Deliverable`
//! per step its workflow names in `deliverables`. Nothing is lost between the
//! run's commit and the publish: each deliverable is written to the outbox tree
//! of the orchestrator's store with the run (the same flush), published
//! durably by the committer (message id = deliverable id, so copies collapse),
//! deleted once the bus acknowledged it, and published again from the outbox
//! at start-up and on ticks until then.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use concierto_bus::{Bus, encode};
use concierto_core::config::Studio;
use concierto_core::store::{KvStore, Op, StoreError};
use concierto_core::subjects;
use concierto_proto::v1;
use prost::Message as _;

use crate::run::RunRecord;

/// The store tree of deliverables not yet acknowledged by the bus.
pub const OUTBOX: &str = "deliverables_outbox";
/// Most characters of a title.
pub const MAX_TITLE: usize = 200;
/// Most deliverables taken from the outbox per tick (the rest wait).
pub const MAX_RESEND: usize = 64;
/// Most bytes of a deliverable's content (the bus carries it whole); longer
/// content is cut at a character boundary and the cut is said at its end.
pub const MAX_CONTENT: usize = 512 * 1024;

/// The deliverables of `run`, which just succeeded at `now`.
pub fn of_run(studio: &Studio, run: &RunRecord, now: DateTime<Utc>) -> Vec<v1::Deliverable> {
    let steps = studio.publishing.steps_of(&run.workflow);
    let at = prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
    };
    let day = now.format("%Y-%m-%d").to_string();
    steps
        .iter()
        .filter_map(|id| run.steps.iter().find(|s| &s.id == id))
        // A skipped step made nothing to deliver.
        .filter(|s| s.state != crate::run::StepState::Skipped)
        .map(|s| {
            let mut labels = s.labels.clone();
            for l in &s.result_labels {
                if !labels.contains(l) {
                    labels.push(l.clone());
                }
            }
            v1::Deliverable {
                id: format!("{}/{}", run.run_id, s.id),
                run_id: run.run_id.clone(),
                workflow: run.workflow.clone(),
                step_id: s.id.clone(),
                role: s.role.clone(),
                title: title_of(&s.output, &run.workflow, &day),
                content: bounded(&s.output),
                content_type: "text/markdown".into(),
                labels,
                at: Some(at),
                params: run.params.clone().into_iter().collect(),
            }
        })
        .collect()
}

/// The first Markdown heading of `content` (`# Title`), else `<workflow> <day>`.
pub fn title_of(content: &str, workflow: &str, day: &str) -> String {
    let heading = content.lines().find_map(|l| {
        let t = l.trim_start();
        let rest = t.trim_start_matches('#');
        (t.starts_with('#') && t.len() - rest.len() <= 6 && rest.starts_with(' '))
            .then(|| rest.trim().trim_end_matches('#').trim())
            .filter(|h| !h.is_empty())
    });
    let title = heading.map_or_else(|| format!("{workflow} {day}"), str::to_string);
    let title: String = title.chars().filter(|c| !c.is_control()).collect();
    if title.chars().count() > MAX_TITLE {
        title.chars().take(MAX_TITLE).collect()
    } else {
        title
    }
}

fn bounded(content: &str) -> String {
    if content.len() <= MAX_CONTENT {
        return content.to_string();
    }
    let mut end = MAX_CONTENT;
    while !content.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n\n[cut: {} of {} bytes kept]",
        &content[..end],
        end,
        content.len()
    )
}

/// Writes `deliverables` to the outbox (made durable by the next flush).
pub fn stage(store: &Arc<dyn KvStore>, deliverables: &[v1::Deliverable]) -> Result<(), StoreError> {
    if deliverables.is_empty() {
        return Ok(());
    }
    let ops = deliverables
        .iter()
        .map(|d| Op::Put(d.id.as_bytes().to_vec(), d.encode_to_vec()))
        .collect();
    store.apply(OUTBOX, ops)
}

/// The deliverables still in the outbox, at most `max`.
pub fn pending(store: &Arc<dyn KvStore>, max: usize) -> Result<Vec<v1::Deliverable>, StoreError> {
    let mut out = Vec::new();
    for (key, bytes) in store.scan_prefix(OUTBOX, b"")?.into_iter().take(max) {
        match v1::Deliverable::decode(bytes.as_slice()) {
            Ok(d) => out.push(d),
            Err(e) => {
                tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "a deliverable in the outbox does not decode; dropped");
                store.apply(OUTBOX, vec![Op::Delete(key)])?;
            }
        }
    }
    Ok(out)
}

/// Removes a deliverable the bus acknowledged.
pub fn published(store: &Arc<dyn KvStore>, id: &str) -> Result<(), StoreError> {
    store.apply(OUTBOX, vec![Op::Delete(id.as_bytes().to_vec())])
}

/// Publishes `deliverables` durably on `deliverable.<workflow>` (message id =
/// deliverable id) and removes each one the bus acknowledged from the outbox;
/// the others stay there for the next resend.
pub async fn send(bus: &Arc<dyn Bus>, store: &Arc<dyn KvStore>, deliverables: &[v1::Deliverable]) {
    for d in deliverables {
        let out = encode(d).msg_id(d.id.clone());
        match bus
            .publish_durable(&subjects::deliverable(&d.workflow), out)
            .await
        {
            Ok(_) => {
                if let Err(e) = published(store, &d.id) {
                    tracing::warn!(deliverable = %d.id, error = %e, "clearing a sent deliverable failed; it is sent again (a duplicate the bus drops)");
                }
            }
            Err(e) => {
                tracing::warn!(deliverable = %d.id, error = %e, "publishing a deliverable failed; it stays in the outbox");
            }
        }
    }
}

/// Publishes what is left in the outbox every `every` until `signal` stops:
/// at start-up (after a crash between a commit and its publish) and after a
/// failed publish.
pub fn spawn_resender(
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    every: std::time::Duration,
    mut signal: concierto_core::service::StopSignal,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = signal.stopped() => break,
                _ = interval.tick() => {}
            }
            let s = store.clone();
            let left = match tokio::task::spawn_blocking(move || pending(&s, MAX_RESEND)).await {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading the deliverables outbox failed");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the deliverables outbox reader failed");
                    continue;
                }
            };
            if !left.is_empty() {
                tracing::info!(
                    count = left.len(),
                    "publishing deliverables left in the outbox"
                );
                send(&bus, &store, &left).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_the_first_heading_else_workflow_and_day() {
        assert_eq!(
            title_of("intro\n## Autumn *drop*  ##\n# later", "wf", "2026-12-06"),
            "Autumn *drop*"
        );
        assert_eq!(
            title_of("no heading\n#hashtag", "wf", "2026-12-06"),
            "wf 2026-12-06"
        );
        assert_eq!(title_of("####### seven", "wf", "d"), "wf d");
        let long = format!("# {}", "x".repeat(500));
        assert_eq!(title_of(&long, "wf", "d").chars().count(), MAX_TITLE);
        assert_eq!(title_of("# a\u{7}b", "wf", "d"), "ab");
    }

    #[test]
    fn long_content_is_cut_with_the_cut_said() {
        let s = "é".repeat(MAX_CONTENT);
        let b = bounded(&s);
        assert!(b.len() < s.len() + 100);
        assert!(b.ends_with(&format!("of {} bytes kept]", s.len())));
        assert_eq!(bounded("short"), "short");
    }
}
