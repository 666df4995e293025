//! `library.put`: a deliverable stored in the content library (`Deliverable` →
//! `ContentItem`), asked by the publisher service. The ingest service answers
//! it because it owns the library.
//!
//! The item is of kind `deliverable`, from source `deliverables`, keyed by the
//! deliverable id (`<run>/<step>`, so a second put of the same deliverable
//! changes nothing), tagged `deliverable`, `workflow:<name>`, `run:<run id>`,
//! `step:<id>`, `role:<name>` and its labels, with the run named in its notes,
//! and added to the collection `deliverables-<workflow>` (created on first use).

use std::sync::Arc;

use concierto_bus::{Bus, BusExt, Outgoing, encode};
use concierto_content::{ContentError, ContentLibrary, ErrorKind, Kind, NewItem};
use concierto_core::service::StopSignal;
use concierto_core::subjects;
use concierto_proto::v1::{ContentItem, Deliverable};

use crate::announce::content_item;

/// The source deliverables are stored under.
pub const SOURCE: &str = "deliverables";
/// Most bytes of a deliverable's content stored.
pub const MAX_CONTENT: usize = 1024 * 1024;
/// Most tags taken from a deliverable's labels.
const MAX_LABELS: usize = 32;

/// The collection of `workflow`'s deliverables.
pub fn collection_of(workflow: &str) -> String {
    format!("deliverables-{workflow}")
}

fn refuse(code: &'static str, e: impl ToString) -> (&'static str, String) {
    (code, e.to_string())
}

fn by_kind(e: ContentError) -> (&'static str, String) {
    match e.kind() {
        ErrorKind::Invalid | ErrorKind::TooLarge => refuse("invalid_argument", e),
        _ => refuse("unavailable", e),
    }
}

/// The dashboard's page of deliverable `id`: `/deliverables/<id, percent-encoded>`.
pub fn dashboard_path(id: &str) -> String {
    let mut out = String::from("/deliverables/");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Stores one deliverable; the stored item.
pub fn put(
    library: &ContentLibrary,
    d: &Deliverable,
) -> Result<ContentItem, (&'static str, String)> {
    if d.id.trim().is_empty() || d.workflow.trim().is_empty() {
        return Err(refuse(
            "invalid_argument",
            "a deliverable needs an id and a workflow",
        ));
    }
    if d.content.len() > MAX_CONTENT {
        return Err(refuse(
            "invalid_argument",
            format!(
                "the content is {} bytes; at most {MAX_CONTENT}",
                d.content.len()
            ),
        ));
    }
    let mut tags = vec![
        "deliverable".to_string(),
        format!("workflow:{}", d.workflow),
        format!("run:{}", d.run_id),
        format!("step:{}", d.step_id),
        format!("role:{}", d.role),
    ];
    tags.extend(d.labels.iter().take(MAX_LABELS).cloned());
    let title = if d.title.trim().is_empty() {
        d.id.clone()
    } else {
        d.title.clone()
    };
    // Its page on the dashboard: also makes each deliverable its own item
    // (the library keys text items by kind, address, title and text).
    let mut new = NewItem::new(Kind::Deliverable, SOURCE, &d.id)
        .url(dashboard_path(&d.id))
        .title(title)
        .text(&d.content)
        .tags(tags)
        .notes(format!(
            "Deliverable of run {} (workflow {}, step {}, role {}).",
            d.run_id, d.workflow, d.step_id, d.role
        ));
    if let Some(at) = &d.at {
        new = new.published_ms(at.seconds.saturating_mul(1000));
    }
    let stored = library.put(new).map_err(by_kind)?;
    let name = collection_of(&d.workflow);
    match library.create_collection(
        &name,
        &format!("Deliverables of the workflow {}", d.workflow),
    ) {
        Ok(_) | Err(ContentError::CollectionExists(_)) => {}
        Err(e) => return Err(by_kind(e)),
    }
    library
        .add_to_collection(&name, &stored.item.id)
        .map_err(by_kind)?;
    let item = library
        .get(&stored.item.id)
        .map_err(by_kind)?
        .unwrap_or(stored.item);
    Ok(content_item(&item))
}

/// Answers `library.put` until `stop`.
pub async fn serve(
    bus: Arc<dyn Bus>,
    library: Arc<ContentLibrary>,
    mut stop: StopSignal,
) -> Result<(), concierto_bus::BusError> {
    let mut sub = bus
        .queue_subscribe_proto::<Deliverable>(subjects::LIBRARY_PUT, "ingest")
        .await?;
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stop.stopped() => break,
                n = sub.next() => n,
            };
            let Some((d, msg)) = next else { break };
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let lib = library.clone();
            let answer = tokio::task::spawn_blocking(move || put(&lib, &d))
                .await
                .unwrap_or_else(|e| Err(("internal", format!("library thread: {e}"))));
            let out = match answer {
                Ok(item) => encode(&item),
                Err((code, m)) => {
                    tracing::warn!(error = %m, "library.put refused");
                    Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, format!("{code}: {m}"))
                }
            };
            if let Err(e) = bus.respond(&reply, out).await {
                tracing::warn!(error = %e, "answering library.put failed");
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Deliverable {
        Deliverable {
            id: "daily@2026-12-06T09:00:00Z/write".into(),
            run_id: "daily@2026-12-06T09:00:00Z".into(),
            workflow: "daily".into(),
            step_id: "write".into(),
            role: "content-creator".into(),
            title: "Autumn drop".into(),
            content: "# Autumn drop\nTerracotta and moss for the new range.".into(),
            labels: vec!["draft".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_deliverable_becomes_a_searchable_item_in_its_workflows_collection() {
        let lib = ContentLibrary::temporary().unwrap();
        let item = put(&lib, &d()).unwrap();
        assert_eq!(item.kind, "deliverable");
        assert!(
            item.tags
                .iter()
                .any(|t| t == "run:daily@2026-12-06t09:00:00z"),
            "{:?}",
            item.tags
        );
        // Twice: the same item, once in the collection.
        let again = put(&lib, &d()).unwrap();
        assert_eq!(again.item_id, item.item_id);
        let c = lib.collection_items(&collection_of("daily")).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].url.as_deref(),
            Some("/deliverables/daily%402026-12-06T09%3A00%3A00Z%2Fwrite")
        );
        // The same text from another run is an item of its own.
        let mut other = d();
        other.id = "daily@2026-12-07T09:00:00Z/write".into();
        other.run_id = "daily@2026-12-07T09:00:00Z".into();
        assert_ne!(put(&lib, &other).unwrap().item_id, item.item_id);
        assert_eq!(
            lib.collection_items(&collection_of("daily")).unwrap().len(),
            2
        );
        assert!(c[0].notes.contains("daily@2026-12-06T09:00:00Z"));
        let hits = lib
            .search(&concierto_content::Query::text("terracotta").kind(Kind::Deliverable))
            .unwrap();
        assert_eq!(hits.total, 2);
    }

    #[test]
    fn anonymous_or_huge_deliverables_are_refused() {
        let lib = ContentLibrary::temporary().unwrap();
        let mut bad = d();
        bad.workflow.clear();
        assert_eq!(put(&lib, &bad).unwrap_err().0, "invalid_argument");
        let mut big = d();
        big.content = "x".repeat(MAX_CONTENT + 1);
        assert_eq!(put(&lib, &big).unwrap_err().0, "invalid_argument");
    }
}
