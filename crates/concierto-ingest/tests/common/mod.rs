//! What the ingest tests share: an ingester over an embedded bus and a
//! temporary library, a subscription counting announcements, and sources.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use concierto_bus::{Bus, BusExt, EmbeddedBus, TypedSubscription, ensure_standard_streams};
use concierto_content::ContentLibrary;
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{ContentSource, Refresh, SourceKind};
use concierto_core::store::{KvStore, SledStore};
use concierto_ingest::{IngestOptions, Ingester};
use concierto_proto::v1::ContentItem;

pub struct Harness {
    pub ingester: Ingester,
    pub library: Arc<ContentLibrary>,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn KvStore>,
    pub clock: ManualClock,
    pub announced: TypedSubscription<ContentItem>,
}

pub fn fast_opts() -> IngestOptions {
    IngestOptions {
        tick: Duration::from_millis(20),
        debounce: Duration::from_millis(100),
        http_timeout: Duration::from_millis(1500),
        min_host_interval: Duration::from_millis(5),
        ..Default::default()
    }
}

pub async fn harness(opts: IngestOptions) -> Harness {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new("concierto."));
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let announced = bus
        .subscribe_proto::<ContentItem>("content.ingested.>")
        .await
        .unwrap();
    let clock = ManualClock::new(chrono::Utc::now());
    let shared: SharedClock = Arc::new(clock.clone());
    let library = Arc::new(
        ContentLibrary::temporary()
            .unwrap()
            .with_clock(shared.clone()),
    );
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let ingester =
        Ingester::new(bus.clone(), library.clone(), store.clone(), shared, opts).unwrap();
    Harness {
        ingester,
        library,
        bus,
        store,
        clock,
        announced,
    }
}

impl Harness {
    /// Announcements received so far (waits briefly for stragglers).
    pub async fn drain(&mut self) -> Vec<ContentItem> {
        let mut out = Vec::new();
        while let Ok(Some((item, _))) =
            tokio::time::timeout(Duration::from_millis(100), self.announced.next()).await
        {
            out.push(item);
        }
        out
    }
}

pub fn source(name: &str, kind: SourceKind, location: &str, refresh: Refresh) -> ContentSource {
    ContentSource {
        name: name.into(),
        group: "test".into(),
        kind,
        location: location.into(),
        role: "visual-storyteller".into(),
        refresh,
        extract: Vec::new(),
        allow_hosts: Vec::new(),
        allow_private_networks: false,
        enabled: true,
    }
}

pub fn daily() -> Refresh {
    Refresh::Every(Duration::from_secs(86_400))
}
