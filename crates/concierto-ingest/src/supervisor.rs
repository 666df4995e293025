//! The ingest supervisor: one actix actor that starts a [`SourceActor`] per
//! enabled content source and a [`LearnerActor`] per learner, keeps them in
//! step with the studio, and restarts the ones that panic.
//!
//! ```text
//!  studio change ──StudioChanged──▶ IngestSupervisor ──Stop / start──▶ SourceActor (one per source)
//!  clock tick ─────────────────────▶      │  ▲                          LearnerActor (one per learner)
//!  ServiceHandle::stop ──Shutdown─▶       │  └──ChildEnded (panicked)──────┘
//!                                         ▼
//!                     restart after the child's backoff (on the clock)
//! ```
//!
//! # How a child ends
//!
//! - **stopped**: its source or learner left the studio or changed, or the
//!   service stops. The supervisor sends [`Stop`] and waits for the answer;
//!   a read in flight finishes first (its items are stored and announced).
//! - **panicked**: the task reading its source (or computing its report)
//!   panicked, or the actor's own code did. The child reports
//!   [`ChildEnded`] (from its [`Reporter`], also while unwinding) and the
//!   supervisor starts it again after its [`Backoff`]: 1 s, doubling at each
//!   panic in a row up to 60 s, and back to 1 s once it has run 5 minutes
//!   without one ([`IngestOptions::restart_backoff`](crate::IngestOptions)
//!   and the two options after it). The other children go on meanwhile; a
//!   panic is logged at error with the source's name and the panic's text.
//!
//! Ordinary failures (a missing folder, a feed that is down) are not
//! panics: the child logs them and tries again on its own schedule.
//!
//! The diff of two studios (what to stop and start) is pure
//! ([`crate::live::plan`]); the supervisor carries it out.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use concierto_bus::Bus;
use concierto_core::config::{ContentSource, Studio};
use concierto_core::live::{LiveStudio, NeedsRestart};
use indexmap::IndexMap;

use crate::fetch::{SharedWebFetcher, WebFetcher, allow_list};
use crate::ingester::Ingester;
use crate::learner::{self, Learner};
use crate::learner_actor::LearnerActor;
use crate::live;
use crate::runner::SourceActor;
use crate::vision::vision_sources;

/// The wait before a panicked child starts again: `first`, doubling at each
/// panic in a row up to `max`; a child that ran `healthy_after` without
/// panicking starts again from `first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    healthy_after: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `first` (at least 1 ms), capped at `max`.
    pub(crate) fn new(first: Duration, max: Duration, healthy_after: Duration) -> Self {
        let first = first.max(Duration::from_millis(1));
        Backoff {
            first,
            max: max.max(first),
            healthy_after,
            next: first,
        }
    }

    /// The wait before the next start of a child that panicked after running
    /// for `ran`.
    pub(crate) fn after_panic(&mut self, ran: Duration) -> Duration {
        if ran >= self.healthy_after {
            self.next = self.first;
        }
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }
}

/// What a child runs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildKind {
    /// A content source.
    Source,
    /// A learner.
    Learner,
}

impl ChildKind {
    fn as_str(self) -> &'static str {
        match self {
            ChildKind::Source => "source",
            ChildKind::Learner => "learner",
        }
    }
}

/// A child ended on its own: it panicked, and is started again after its
/// backoff. `generation` tells an old run's report from the current one's.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ChildEnded {
    pub kind: ChildKind,
    pub name: String,
    pub generation: u64,
    /// The panic's text.
    pub detail: String,
}

/// Stop after the read in flight (sent by the supervisor to a child).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;

/// A changed studio: sources and learners added, removed or changed are
/// started and stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StudioChanged(pub Arc<Studio>);

/// Stop every child, wait for them, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// Held by a child: tells the supervisor once that the child panicked,
/// either when asked ([`Reporter::panicked`], the read task's panic) or when
/// dropped while its thread unwinds (a panic in the actor's own code).
pub(crate) struct Reporter {
    to: Recipient<ChildEnded>,
    kind: ChildKind,
    name: String,
    generation: u64,
    sent: bool,
}

impl Reporter {
    /// Reports that the child panicked with `detail` (once).
    pub(crate) fn panicked(&mut self, detail: String) {
        if self.sent {
            return;
        }
        self.sent = true;
        self.to.do_send(ChildEnded {
            kind: self.kind,
            name: self.name.clone(),
            generation: self.generation,
            detail,
        });
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.panicked("panicked in its actor".into());
        }
    }
}

/// The text of a panic caught by a task's `JoinHandle`.
pub(crate) fn panic_text(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

/// Running, or waiting for its restart.
enum Life<A: Actor> {
    Running {
        addr: Addr<A>,
        since: DateTime<Utc>,
        generation: u64,
    },
    Waiting {
        until: DateTime<Utc>,
    },
}

/// One child: what it runs for, its state, its backoff.
struct Child<T, A: Actor> {
    def: T,
    life: Life<A>,
    backoff: Backoff,
}

impl<T, A: Actor> Child<T, A> {
    fn addr(&self) -> Option<Addr<A>> {
        match &self.life {
            Life::Running { addr, .. } => Some(addr.clone()),
            Life::Waiting { .. } => None,
        }
    }

    /// Waiting, and its backoff is over at `now`.
    fn due(&self, now: DateTime<Utc>) -> bool {
        matches!(self.life, Life::Waiting { until } if until <= now)
    }

    /// Its run `generation` panicked at `now`: it waits for its backoff
    /// (returned). `None` when that run is not the current one.
    fn panicked(&mut self, generation: u64, now: DateTime<Utc>) -> Option<Duration> {
        let Life::Running {
            since,
            generation: current,
            ..
        } = &self.life
        else {
            return None;
        };
        if *current != generation {
            return None;
        }
        let ran = (now - *since).to_std().unwrap_or(Duration::ZERO);
        let wait = self.backoff.after_panic(ran);
        self.life = Life::Waiting {
            until: now + chrono(wait),
        };
        Some(wait)
    }
}

/// The ingest supervisor (see the module documentation).
pub(crate) struct IngestSupervisor {
    ing: Ingester,
    bus: Arc<dyn Bus>,
    live: LiveStudio,
    fetcher: SharedWebFetcher,
    sources: IndexMap<String, Child<ContentSource, SourceActor>>,
    learners: IndexMap<String, Child<Learner, LearnerActor>>,
    restart: NeedsRestart,
    generation: u64,
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn no_trend_report() {
    tracing::info!(
        "no content source selects design_trends: there is no trend report (the trend learner does not run)"
    );
}

/// Stops every actor of `addrs` and waits until each has answered.
async fn stop_all<A>(addrs: Vec<Addr<A>>)
where
    A: Actor<Context = Context<A>> + Handler<Stop>,
{
    // A child that already died (a panic) answers nothing: nothing to stop.
    let stops = addrs.into_iter().map(|a| a.send(Stop));
    futures::future::join_all(stops).await;
}

impl IngestSupervisor {
    pub(crate) fn new(
        ing: Ingester,
        bus: Arc<dyn Bus>,
        live: LiveStudio,
        fetcher: SharedWebFetcher,
    ) -> Self {
        IngestSupervisor {
            ing,
            bus,
            live,
            fetcher,
            sources: IndexMap::new(),
            learners: IndexMap::new(),
            restart: NeedsRestart::new("ingest"),
            generation: 0,
        }
    }

    fn backoff(&self) -> Backoff {
        let o = self.ing.opts();
        Backoff::new(
            o.restart_backoff,
            o.restart_backoff_max,
            o.restart_healthy_after,
        )
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    fn spawn_source(&mut self, def: &ContentSource, ctx: &Context<Self>) -> Life<SourceActor> {
        let generation = self.next_generation();
        let reporter = Reporter {
            to: ctx.address().recipient(),
            kind: ChildKind::Source,
            name: def.name.clone(),
            generation,
            sent: false,
        };
        let addr = SourceActor::new(self.ing.clone(), def.clone(), reporter).start();
        Life::Running {
            addr,
            since: self.ing.clock().now(),
            generation,
        }
    }

    fn spawn_learner(&mut self, def: &Learner, ctx: &Context<Self>) -> Life<LearnerActor> {
        let generation = self.next_generation();
        let reporter = Reporter {
            to: ctx.address().recipient(),
            kind: ChildKind::Learner,
            name: def.name(),
            generation,
            sent: false,
        };
        let addr = LearnerActor::new(
            self.ing.clone(),
            self.bus.clone(),
            self.live.clone(),
            def.clone(),
            reporter,
        )
        .start();
        Life::Running {
            addr,
            since: self.ing.clock().now(),
            generation,
        }
    }

    fn add_source(&mut self, def: ContentSource, ctx: &Context<Self>) {
        let life = self.spawn_source(&def, ctx);
        let backoff = self.backoff();
        self.sources
            .insert(def.name.clone(), Child { def, life, backoff });
    }

    fn add_learner(&mut self, def: Learner, ctx: &Context<Self>) {
        let life = self.spawn_learner(&def, ctx);
        let backoff = self.backoff();
        self.learners
            .insert(def.name(), Child { def, life, backoff });
    }

    /// Starts the children whose backoff is over.
    fn restart_due(&mut self, ctx: &Context<Self>) {
        let now = self.ing.clock().now();
        let names: Vec<String> = self
            .sources
            .iter()
            .filter(|(_, c)| c.due(now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let Some(def) = self.sources.get(&name).map(|c| c.def.clone()) else {
                continue;
            };
            let life = self.spawn_source(&def, ctx);
            if let Some(c) = self.sources.get_mut(&name) {
                c.life = life;
            }
            tracing::info!(source = %name, "ingest source started again after its panic");
        }
        let names: Vec<String> = self
            .learners
            .iter()
            .filter(|(_, c)| c.due(now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let Some(def) = self.learners.get(&name).map(|c| c.def.clone()) else {
                continue;
            };
            let life = self.spawn_learner(&def, ctx);
            if let Some(c) = self.learners.get_mut(&name) {
                c.life = life;
            }
            tracing::info!(learner = %name, "learner started again after its panic");
        }
    }

    /// Starts the sources and learners of `studio` that do not run yet.
    fn start_missing(
        &mut self,
        studio: &Studio,
        ctx: &Context<Self>,
    ) -> (Vec<String>, Vec<String>) {
        let mut sources = Vec::new();
        for s in studio.content_sources.iter().filter(|s| s.enabled) {
            if !self.sources.contains_key(&s.name) {
                sources.push(s.name.clone());
                self.add_source(s.clone(), ctx);
            }
        }
        let mut learners = Vec::new();
        for l in learner::learners(studio, &self.ing.opts().trend_roles) {
            if !self.learners.contains_key(&l.name()) {
                learners.push(l.name());
                self.add_learner(l, ctx);
            }
        }
        (sources, learners)
    }

    /// Takes `next`'s web fetch rules for `ingest.fetch` when they changed.
    fn update_fetcher(&self, next: &Studio) {
        let current = self.fetcher.get();
        let allow = allow_list(next, self.ing.opts());
        if current.allow() != allow.as_slice() || *current.settings() != next.agents.tools.web_fetch
        {
            match WebFetcher::new(next, self.ing.opts(), self.ing.store()) {
                Ok(f) => self.fetcher.set(Arc::new(f)),
                Err(e) => {
                    tracing::warn!(error = %e, "the web fetch tool keeps its rules: the new ones could not be applied")
                }
            }
        }
    }
}

impl Actor for IngestSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let studio = self.live.get();
        for s in &studio.content_sources {
            if !s.enabled {
                tracing::info!(source = %s.name, "source off (enabled: false): not read");
            }
        }
        self.start_missing(&studio, ctx);
        if !self.learners.contains_key(learner::TREND_REPORT) {
            no_trend_report();
        }
        ctx.run_interval(self.ing.opts().tick, |act, ctx| {
            if !ctx.waiting() {
                act.restart_due(ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::debug!("ingest supervisor stopped");
    }
}

impl Handler<ChildEnded> for IngestSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildEnded, _: &mut Self::Context) {
        let now = self.ing.clock().now();
        let what = msg.kind.as_str();
        let wait = match msg.kind {
            ChildKind::Source => self
                .sources
                .get_mut(&msg.name)
                .and_then(|c| c.panicked(msg.generation, now)),
            ChildKind::Learner => self
                .learners
                .get_mut(&msg.name)
                .and_then(|c| c.panicked(msg.generation, now)),
        };
        match wait {
            Some(wait) => tracing::error!(
                kind = what,
                name = %msg.name,
                panic = %msg.detail,
                restart_in = ?wait,
                "an ingest {what} panicked; it starts again after its backoff (the others go on)"
            ),
            None => {
                tracing::debug!(kind = what, name = %msg.name, "an old run of an ingest task ended")
            }
        }
    }
}

impl Handler<StudioChanged> for IngestSupervisor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: StudioChanged, _: &mut Self::Context) -> Self::Result {
        let next = msg.0;
        let before = self.live.get();
        self.restart.check(
            "vision models (content sources' roles on openai/anthropic executors)",
            &vision_sources(&before),
            &vision_sources(&next),
        );
        self.live.set(next.clone());
        let had_trends = self.learners.contains_key(learner::TREND_REPORT);
        let wanted = learner::learners(&next, &self.ing.opts().trend_roles);
        let running: Vec<(String, ContentSource)> = self
            .sources
            .iter()
            .map(|(n, c)| (n.clone(), c.def.clone()))
            .collect();
        let plan = live::plan(&running, &next);
        let mut sources = Vec::new();
        for name in plan.changed.iter().chain(&plan.removed) {
            if let Some(c) = self.sources.shift_remove(name) {
                sources.extend(c.addr());
            }
        }
        let mut learners = Vec::new();
        for name in self.learners.keys().cloned().collect::<Vec<_>>() {
            let keep = wanted
                .iter()
                .any(|l| l.name() == name && self.learners.get(&name).is_some_and(|c| c.def == *l));
            if !keep && let Some(c) = self.learners.shift_remove(&name) {
                learners.extend(c.addr());
            }
        }
        let stops = async move {
            stop_all(sources).await;
            stop_all(learners).await;
        };
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(stops).map(
            move |(), act, ctx| {
                let (started, learners_started) = act.start_missing(&next, ctx);
                let added: Vec<&String> = started
                    .iter()
                    .filter(|n| !plan.changed.contains(n))
                    .collect();
                if had_trends && !act.learners.contains_key(learner::TREND_REPORT) {
                    no_trend_report();
                }
                act.update_fetcher(&next);
                tracing::info!(
                    sources = act.sources.len(),
                    added = ?added,
                    changed = ?plan.changed,
                    removed = ?plan.removed,
                    learners_started = ?learners_started,
                    "ingest service took the changed studio"
                );
            },
        )))
    }
}

impl Handler<Shutdown> for IngestSupervisor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let sources: Vec<_> = self
            .sources
            .drain(..)
            .filter_map(|(_, c)| c.addr())
            .collect();
        let learners: Vec<_> = self
            .learners
            .drain(..)
            .filter_map(|(_, c)| c.addr())
            .collect();
        let stops = async move {
            stop_all(sources).await;
            stop_all(learners).await;
        };
        AtomicResponse::new(Box::pin(
            fut::wrap_future::<_, Self>(stops).map(|(), _, ctx| ctx.stop()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_cap_and_starts_over_after_a_healthy_run() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(60), s(300));
        let waits: Vec<u64> = (0..8)
            .map(|_| b.after_panic(Duration::ZERO).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        // A run shorter than the healthy period keeps the wait where it is.
        assert_eq!(b.after_panic(s(299)), s(60));
        // A healthy run starts over.
        assert_eq!(b.after_panic(s(300)), s(1));
        assert_eq!(b.after_panic(s(0)), s(2));
    }

    #[test]
    fn a_zero_backoff_still_waits_and_a_cap_below_the_first_wait_is_the_first_wait() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(b.after_panic(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(b.after_panic(Duration::ZERO), Duration::from_millis(1));
    }
}
