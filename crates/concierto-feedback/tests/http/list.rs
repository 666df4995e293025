//! `feedback.list` over 5,000 stored pieces of feedback reads the records of
//! its page and no others: shown by a store that counts what is read of the
//! feedback tree.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concierto_bus::{Bus, EmbeddedBus, encode};
use concierto_core::store::{Entries, KvStore, Op, SledStore, StoreError};
use concierto_core::subjects;
use concierto_feedback::{FEEDBACK_TREE, ensure_time_index, list_entries, put_record};
use concierto_proto::v1;

/// A store that counts the feedback records read: `get`s of the feedback
/// tree, and entries a scan of it returns.
struct CountingStore {
    inner: SledStore,
    records_read: AtomicUsize,
}

impl CountingStore {
    fn records_read(&self) -> usize {
        self.records_read.load(Ordering::SeqCst)
    }
}

impl KvStore for CountingStore {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self.inner.get(tree, key)?;
        if tree == FEEDBACK_TREE && v.is_some() {
            self.records_read.fetch_add(1, Ordering::SeqCst);
        }
        Ok(v)
    }

    fn apply(&self, tree: &str, ops: Vec<Op>) -> Result<(), StoreError> {
        self.inner.apply(tree, ops)
    }

    fn scan_prefix(&self, tree: &str, prefix: &[u8]) -> Result<Entries, StoreError> {
        let entries = self.inner.scan_prefix(tree, prefix)?;
        if tree == FEEDBACK_TREE {
            self.records_read.fetch_add(entries.len(), Ordering::SeqCst);
        }
        Ok(entries)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

fn feedback(i: i64) -> v1::Feedback {
    v1::Feedback {
        feedback_id: format!("web-{i:05}"),
        channel: v1::FeedbackChannel::WebForm as i32,
        author: "anonymous".into(),
        text: format!("message {i}: {}", "x".repeat(200)),
        // One every 7 seconds: the 5,000 span about ten hours.
        received_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + 7 * i,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Answers `orchestrator.runs.get` with "no such run", as an orchestrator
/// that has not started the feedback's run yet.
async fn no_runs(bus: Arc<dyn Bus>) -> tokio::task::JoinHandle<()> {
    let mut sub = bus
        .subscribe(subjects::ORCHESTRATOR_GET_RUN)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply.clone() {
                let _ = bus
                    .respond(&reply, encode(&v1::GetRunResponse::default()))
                    .await;
            }
        }
    })
}

#[tokio::test]
async fn page_one_of_5000_reads_only_its_records() {
    let store = Arc::new(CountingStore {
        inner: SledStore::temporary().expect("store"),
        records_read: AtomicUsize::new(0),
    });
    // As `start` does on a new store: the index is complete from the start.
    assert_eq!(ensure_time_index(store.as_ref()).expect("index"), 0);
    for i in 0..5_000 {
        put_record(store.as_ref(), &feedback(i)).expect("put");
    }
    assert_eq!(store.records_read(), 0);

    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::default());
    let responder = no_runs(bus.clone()).await;
    let kv: Arc<dyn KvStore> = store.clone();
    let req = |token: &str| v1::ListFeedbackRequest {
        page_size: 25,
        page_token: token.to_string(),
        ..Default::default()
    };
    let page = list_entries(&bus, &kv, &req(""), Duration::from_secs(5))
        .await
        .expect("page 1");
    let ids: Vec<String> = page
        .entries
        .iter()
        .filter_map(|e| e.feedback.as_ref().map(|f| f.feedback_id.clone()))
        .collect();
    assert_eq!(ids.len(), 25);
    assert_eq!(ids[0], "web-04999", "newest first");
    assert_eq!(ids[24], "web-04975");
    assert_eq!(
        store.records_read(),
        25,
        "page 1 decodes its 25 records, not 5,000"
    );
    assert!(!page.next_page_token.is_empty());

    // Page 2 follows on, reading 25 more.
    let page2 = list_entries(
        &bus,
        &kv,
        &req(&page.next_page_token),
        Duration::from_secs(5),
    )
    .await
    .expect("page 2");
    let first = page2.entries[0].feedback.as_ref().expect("feedback");
    assert_eq!(first.feedback_id, "web-04974");
    assert_eq!(store.records_read(), 50);
    responder.abort();
}
