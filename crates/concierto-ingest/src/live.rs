//! The ingest service's tasks, kept in step with the studio: one runner per
//! content source and one task per learner, each stopped on its own. A
//! changed studio ([`concierto_core::service::ServiceHandle::studio_changed`])
//! reaches the supervisor as a message; it stops the runners of sources gone
//! or changed (path, kind, refresh, extractors, role, hosts...) and starts
//! those of new or changed ones, which read at their next cycle (a new
//! source at once, a changed one on its refresh after its last read); the
//! learners likewise. The library, cursors and outbox stay as they are.
//! `ingest.fetch` takes the new allow list and `agents.tools.web_fetch` at
//! the next request. Vision models stay as started (a change is warned about).
//! A source with `enabled: false` has no runner: it makes no request and
//! reads no folder (turning it on starts one, turning it off stops it).

use std::sync::Arc;

use concierto_bus::Bus;
use concierto_core::config::{ContentSource, Studio};
use concierto_core::live::{LiveStudio, NeedsRestart};
use concierto_core::service::{ServiceHandle, StopSignal};
use indexmap::IndexMap;
use tokio::sync::mpsc;

use crate::fetch::{SharedWebFetcher, WebFetcher, allow_list};
use crate::ingester::Ingester;
use crate::learner::{self, Learner};
use crate::runner;
use crate::vision::vision_sources;

/// A task that can be stopped alone, with what it was started for.
struct Child<T> {
    def: T,
    handle: ServiceHandle,
}

/// Everything the ingest service runs per source and per learner.
pub(crate) struct Tasks {
    ing: Ingester,
    bus: Arc<dyn Bus>,
    live: LiveStudio,
    fetcher: SharedWebFetcher,
    runners: IndexMap<String, Child<ContentSource>>,
    learners: IndexMap<String, Child<Learner>>,
    restart: NeedsRestart,
}

fn spawn_runner(ing: &Ingester, source: ContentSource) -> Child<ContentSource> {
    let (handle, control) = ServiceHandle::new(format!("ingest source {}", source.name));
    let (ing, def, signal) = (ing.clone(), source.clone(), control.signal.clone());
    tokio::spawn(async move {
        runner::run(ing, source, signal).await;
        control.finished(Ok(()));
    });
    Child { def, handle }
}

fn spawn_learner(
    ing: &Ingester,
    bus: &Arc<dyn Bus>,
    live: &LiveStudio,
    l: Learner,
) -> Child<Learner> {
    let (handle, control) = ServiceHandle::new(format!("learner {}", l.name()));
    let (ing, bus, live, def) = (ing.clone(), bus.clone(), live.clone(), l.clone());
    let signal: StopSignal = control.signal.clone();
    tokio::spawn(async move {
        learner::run(ing, bus, live, l, signal).await;
        control.finished(Ok(()));
    });
    Child { def, handle }
}

fn no_trend_report() {
    tracing::info!(
        "no content source selects design_trends: there is no trend report (the trend learner does not run)"
    );
}

/// Stops every child in `gone`, all at once, and waits for them.
async fn stop_all<T>(gone: Vec<Child<T>>) {
    let stops = gone.into_iter().map(|c| c.handle.stop());
    for r in futures::future::join_all(stops).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "an ingest task ended badly");
        }
    }
}

impl Tasks {
    /// Starts a runner per source of `live`'s studio and its learners.
    pub(crate) fn start(
        ing: Ingester,
        bus: Arc<dyn Bus>,
        live: LiveStudio,
        fetcher: SharedWebFetcher,
    ) -> Self {
        let studio = live.get();
        let mut t = Tasks {
            ing,
            bus,
            live,
            fetcher,
            runners: IndexMap::new(),
            learners: IndexMap::new(),
            restart: NeedsRestart::new("ingest"),
        };
        for s in &studio.content_sources {
            if !s.enabled {
                tracing::info!(source = %s.name, "source off (enabled: false): not read");
                continue;
            }
            let child = spawn_runner(&t.ing, s.clone());
            t.runners.insert(s.name.clone(), child);
        }
        for l in learner::learners(&studio, &t.ing.opts().trend_roles) {
            let child = spawn_learner(&t.ing, &t.bus, &t.live, l.clone());
            t.learners.insert(l.name(), child);
        }
        if !t.learners.contains_key(learner::TREND_REPORT) {
            no_trend_report();
        }
        t
    }

    /// Takes `next`: sources and learners added, removed or changed are
    /// started and stopped; logs one line saying what changed.
    pub(crate) async fn apply(&mut self, next: Arc<Studio>) {
        let before = self.live.get();
        self.restart.check(
            "vision models (content sources' roles on openai/anthropic executors)",
            &vision_sources(&before),
            &vision_sources(&next),
        );
        self.live.set(next.clone());

        // Sources.
        let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        let mut gone = Vec::new();
        for name in self.runners.keys().cloned().collect::<Vec<_>>() {
            match next.content_sources.iter().find(|s| s.name == name) {
                Some(s) if self.runners.get(&name).is_some_and(|c| c.def == *s) => {}
                Some(_) => {
                    changed.push(name.clone());
                    gone.extend(self.runners.shift_remove(&name));
                }
                None => {
                    removed.push(name.clone());
                    gone.extend(self.runners.shift_remove(&name));
                }
            }
        }
        stop_all(gone).await;
        for s in next.content_sources.iter().filter(|s| s.enabled) {
            if !self.runners.contains_key(&s.name) {
                if !changed.contains(&s.name) {
                    added.push(s.name.clone());
                }
                let child = spawn_runner(&self.ing, s.clone());
                self.runners.insert(s.name.clone(), child);
            }
        }

        // Learners.
        let had_trends = self.learners.contains_key(learner::TREND_REPORT);
        let wanted = learner::learners(&next, &self.ing.opts().trend_roles);
        let mut gone = Vec::new();
        for name in self.learners.keys().cloned().collect::<Vec<_>>() {
            let keep = wanted
                .iter()
                .any(|l| l.name() == name && self.learners.get(&name).is_some_and(|c| c.def == *l));
            if !keep {
                gone.extend(self.learners.shift_remove(&name));
            }
        }
        stop_all(gone).await;
        let mut restarted = Vec::new();
        for l in wanted {
            let name = l.name();
            if !self.learners.contains_key(&name) {
                let child = spawn_learner(&self.ing, &self.bus, &self.live, l);
                self.learners.insert(name.clone(), child);
                restarted.push(name);
            }
        }
        if had_trends && !self.learners.contains_key(learner::TREND_REPORT) {
            no_trend_report();
        }

        // `ingest.fetch`: its allow list and settings.
        let current = self.fetcher.get();
        let allow = allow_list(&next, self.ing.opts());
        if current.allow() != allow.as_slice() || *current.settings() != next.agents.tools.web_fetch
        {
            match WebFetcher::new(&next, self.ing.opts(), self.ing.store()) {
                Ok(f) => self.fetcher.set(Arc::new(f)),
                Err(e) => {
                    tracing::warn!(error = %e, "the web fetch tool keeps its rules: the new ones could not be applied")
                }
            }
        }
        tracing::info!(
            sources = self.runners.len(),
            added = ?added,
            changed = ?changed,
            removed = ?removed,
            learners_started = ?restarted,
            "ingest service took the changed studio"
        );
    }

    /// Stops every runner and learner and waits for them.
    pub(crate) async fn stop(self) {
        stop_all(self.runners.into_values().collect()).await;
        stop_all(self.learners.into_values().collect()).await;
    }
}

/// Applies each studio that comes on `changes` until `stop`; then stops
/// every task.
pub(crate) async fn supervise(
    mut tasks: Tasks,
    mut changes: mpsc::UnboundedReceiver<Arc<Studio>>,
    mut stop: StopSignal,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.stopped() => break,
            next = changes.recv() => match next {
                // Only the newest of a burst matters.
                Some(mut studio) => {
                    while let Ok(newer) = changes.try_recv() {
                        studio = newer;
                    }
                    tasks.apply(studio).await;
                }
                None => {
                    stop.stopped().await;
                    break;
                }
            },
        }
    }
    tasks.stop().await;
}
