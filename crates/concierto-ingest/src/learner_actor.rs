//! One actor per learner ([`LearnerActor`]): computes its report on its
//! frequency, and a campaign or feedback learner also as soon as its
//! source's read brought new or changed records; hands the report to the
//! roles the studio has then ([`crate::learner`] says what each computes).
//!
//! The computation and hand-out run in their own tokio task (the actor
//! waits for it): one that panics ends the actor, which tells the
//! [`IngestSupervisor`](crate::supervisor::IngestSupervisor); it starts the
//! learner again after its backoff.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::Bus;
use concierto_core::config::Refresh;
use concierto_core::live::LiveStudio;

use crate::TREE;
use crate::error::IngestError;
use crate::ingester::Ingester;
use crate::learner::{Learned, Learner, compute, hand_out};
use crate::supervisor::{Reporter, Stop, panic_text};

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The last time a learner's report was computed, from the store.
fn last_computed(ing: &Ingester, learner: &Learner) -> Option<DateTime<Utc>> {
    #[derive(serde::Deserialize)]
    struct When {
        computed_ms: i64,
    }
    let bytes = ing
        .store()
        .get(TREE, learner.key().as_bytes())
        .ok()
        .flatten()?;
    let w: When = serde_json::from_slice(&bytes).ok()?;
    Utc.timestamp_millis_opt(w.computed_ms).single()
}

/// Runs one learner until stopped.
pub(crate) struct LearnerActor {
    ing: Ingester,
    bus: Arc<dyn Bus>,
    studio: LiveStudio,
    learner: Learner,
    reporter: Reporter,
    every: Duration,
    roles: Vec<String>,
    due: DateTime<Utc>,
    /// The source's change count at the last computation.
    seen: u64,
}

impl LearnerActor {
    pub(crate) fn new(
        ing: Ingester,
        bus: Arc<dyn Bus>,
        studio: LiveStudio,
        learner: Learner,
        reporter: Reporter,
    ) -> Self {
        let opts = ing.opts();
        let (every, roles) = match &learner {
            Learner::Trends(audience) => (opts.trend_every, audience.roles.clone()),
            Learner::Campaigns(s) => {
                let every = match s.refresh {
                    Refresh::Every(d) => d,
                    // A folder of analytics changes rarely: weekly unless said otherwise.
                    Refresh::OnUpdate | Refresh::Continuous => opts.trend_every,
                };
                let mut roles = opts.campaign_roles.clone();
                if !roles.contains(&s.role) {
                    roles.push(s.role.clone());
                }
                (every, roles)
            }
            // Processed feedback goes to the source's learner only, recomputed
            // when its folder brought records (and on its frequency).
            Learner::Feedback(s) => {
                let every = match s.refresh {
                    Refresh::Every(d) => d,
                    Refresh::OnUpdate | Refresh::Continuous => opts.trend_every,
                };
                (every, vec![s.role.clone()])
            }
        };
        let now = ing.clock().now();
        let due = match last_computed(&ing, &learner) {
            Some(l) => (l + chrono(every)).min(now + chrono(every)),
            None => now + chrono(opts.learn_delay),
        };
        let mut actor = LearnerActor {
            ing,
            bus,
            studio,
            learner,
            reporter,
            every,
            roles,
            due,
            seen: 0,
        };
        actor.seen = actor.changes();
        actor
    }

    /// Campaign and feedback insights are also recomputed when their source
    /// brought records: its change count.
    fn changes(&self) -> u64 {
        match &self.learner {
            Learner::Campaigns(source) | Learner::Feedback(source) => {
                self.ing.changes(&source.name)
            }
            Learner::Trends(_) => 0,
        }
    }

    /// Computes and hands out the report when it is due.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        if ctx.waiting() || ctx.state() != ActorState::Running {
            return;
        }
        let now = self.ing.clock().now();
        let changed = self.changes();
        if changed != self.seen {
            self.due = self.due.min(now);
        }
        if now < self.due {
            return;
        }
        self.seen = changed;
        let (library, learner, window) = (
            self.ing.library().clone(),
            self.learner.clone(),
            self.ing.opts().trend_window,
        );
        let (bus, store, studio, roles) = (
            self.bus.clone(),
            self.ing.store(),
            self.studio.get(),
            self.roles.clone(),
        );
        let hook = self.ing.opts().before_read.clone();
        let name = self.learner.name();
        let work = tokio::spawn(async move {
            if let Some(hook) = hook {
                hook.call(&name);
            }
            let learned = compute(library, learner, now, window).await?;
            hand_out(&bus, &store, &studio, &learned, &roles, now).await?;
            Ok::<_, IngestError>(learned)
        });
        ctx.wait(
            fut::wrap_future::<_, Self>(work).map(move |result, act, ctx| match result {
                Ok(result) => act.after(result, now),
                Err(e) => {
                    act.reporter.panicked(panic_text(e));
                    ctx.stop();
                }
            }),
        );
    }

    /// Logs what was computed at `now` and schedules the next computation.
    fn after(&mut self, result: Result<Learned, IngestError>, now: DateTime<Utc>) {
        self.due = match result {
            Ok(learned) => {
                match &learned {
                    Learned::Trends(r) => tracing::info!(
                        items = r.items_current,
                        terms = r.terms.len(),
                        palettes = r.palettes.len(),
                        typefaces = r.typefaces.len(),
                        pattern_recognition = r.pattern_recognition,
                        "trend report computed"
                    ),
                    Learned::Campaigns { source, insights } => tracing::info!(
                        %source,
                        campaigns = insights.campaigns,
                        high_performers = insights.high_performers,
                        "campaign insights computed"
                    ),
                    Learned::Feedback { source, insights } => tracing::info!(
                        %source,
                        items = insights.items,
                        "feedback insights computed"
                    ),
                }
                now + chrono(self.every)
            }
            Err(e) => {
                tracing::warn!(learner = %self.learner.name(), error = %e, "learner failed; tried again later");
                now + chrono(self.ing.opts().retry_after.min(self.every))
            }
        };
    }
}

impl Actor for LearnerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(learner = %self.learner.name(), next = %self.due.to_rfc3339(), "learner started");
        ctx.run_interval(self.ing.opts().tick, |act, ctx| act.poll(ctx));
        self.poll(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::info!(learner = %self.learner.name(), "learner stopped");
    }
}

impl Handler<Stop> for LearnerActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
