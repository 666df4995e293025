//! The tracker's actor: one actix actor owns the [`Core`] (the pure state
//! machine) and does its I/O: it publishes crossings, writes and flushes the
//! store, settles deliveries and answers requests. The listeners of
//! [`crate::service`] hand it every bus input as an [`Input`] message; its
//! handlers are atomic (one input at a time, in order), so series, watch
//! states and the store never race. A clock tick (every
//! [`TrackerOptions::tick`](crate::TrackerOptions)) evaluates the watches and
//! flushes; [`SetStudio`] takes a changed studio; [`Finish`] flushes for the
//! last time and stops the actor.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use concierto_bus::{Bus, BusExt, Delivery, Outgoing, encode};
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::store::{KvStore, StoreError};
use concierto_core::subjects;
use concierto_proto::v1::{self, MetricSample};

use crate::TrackerError;
use crate::core::{Core, Outcome};
use crate::series::TREE;
use crate::service::{Snapshot, TrackerView};

/// One input from the bus.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum Input {
    /// Metric samples from the stream.
    Samples(Vec<(MetricSample, Delivery)>),
    /// Run events from the stream.
    Runs(Vec<(v1::RunEvent, Delivery)>),
    /// A worker's heartbeat.
    Heartbeat(v1::AgentHeartbeat),
    /// A gate opened or closed.
    Gate(v1::Gate),
    /// A message was dead-lettered.
    DeadLetter,
    /// `tracker.metrics.record`, with the reply subject.
    Record(v1::RecordMetricRequest, String),
    /// `tracker.metrics.get`, with the reply subject.
    Get(v1::GetMetricsRequest, String),
    /// `tracker.health`, with the reply subject.
    Health(String),
    /// Evaluate the watches, prune when due, flush.
    Tick,
}

/// A changed studio, taken before the next input.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetStudio(pub Arc<Studio>);

/// Flush for the last time and stop (the listeners have ended).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub(crate) struct Finish;

/// The tracker's actor (see the module documentation).
pub(crate) struct TrackerActor {
    /// Lent to the future handling the current input; `Some` between inputs.
    worker: Option<Worker>,
    clock: SharedClock,
    tick: Duration,
}

impl TrackerActor {
    pub(crate) fn new(worker: Worker, clock: SharedClock, tick: Duration) -> Self {
        TrackerActor {
            worker: Some(worker),
            clock,
            tick,
        }
    }

    /// Lends the worker to `work` (an input's handling), then takes it back
    /// and refreshes the view.
    fn lend<F, Fut>(&mut self, work: F) -> ResponseActFuture<Self, ()>
    where
        F: FnOnce(Worker, DateTime<Utc>) -> Fut,
        Fut: std::future::Future<Output = Worker> + 'static,
    {
        let now = self.clock.now();
        let Some(worker) = self.worker.take() else {
            // Not reached: the handlers are atomic, so the worker is back
            // before the next input.
            tracing::error!("the tracker got an input while another was handled; it is dropped");
            return Box::pin(fut::ready(()));
        };
        Box::pin(
            fut::wrap_future::<_, Self>(work(worker, now)).map(move |worker, act, _| {
                worker.show(now);
                act.worker = Some(worker);
            }),
        )
    }
}

impl Actor for TrackerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |act, ctx| {
            // actix calls this again at once for every tick missed while an
            // input was handled: one tick is enough.
            if ctx.waiting() || act.worker.is_none() {
                return;
            }
            let work = act.lend(|mut w, now| async move {
                w.handle(Input::Tick, now).await;
                w
            });
            ctx.wait(work);
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::debug!("tracker actor stopped");
    }
}

impl Handler<Input> for TrackerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, input: Input, _: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(self.lend(|mut w, now| async move {
            w.handle(input, now).await;
            w
        }))
    }
}

impl Handler<SetStudio> for TrackerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SetStudio, _: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(self.lend(|mut w, now| async move {
            w.take_studio(&msg.0, now).await;
            w
        }))
    }
}

impl Handler<Finish> for TrackerActor {
    type Result = AtomicResponse<Self, Result<(), String>>;

    fn handle(&mut self, _: Finish, _: &mut Self::Context) -> Self::Result {
        let Some(mut worker) = self.worker.take() else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(
                "the tracker's state was lost".to_string()
            ))));
        };
        let done = async move {
            let r = worker.flush().await;
            (worker, r)
        };
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(done).map(
            |(worker, r), act, ctx| {
                act.worker = Some(worker);
                ctx.stop();
                r.map_err(|e| format!("final flush: {e}"))
            },
        )))
    }
}

/// The tracker's state and the I/O around it; the actor lends it to one
/// input's future at a time.
pub(crate) struct Worker {
    pub(crate) core: Core,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) view: TrackerView,
    pub(crate) prune_every: Duration,
    pub(crate) last_prune: Option<DateTime<Utc>>,
    pub(crate) dirty: bool,
}

fn error_reply(e: &TrackerError) -> Outgoing {
    Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, e.reply_header())
}

impl Worker {
    /// Shows the state as of `now` in the view.
    fn show(&self, now: DateTime<Utc>) {
        self.view.set(Snapshot {
            metrics: self.core.views(now),
            health: self.core.health(now),
        });
    }

    /// Takes a changed studio: new specs and watches for the next evaluation (done
    /// now), series and watch states kept.
    async fn take_studio(&mut self, studio: &Studio, now: DateTime<Utc>) {
        match self.core.studio_changed(studio, now) {
            Ok((out, changes)) => {
                tracing::info!(
                    added = ?changes.added,
                    removed = ?changes.removed,
                    changed = ?changes.changed,
                    watches = ?changes.watches,
                    "studio changed: progress metrics {changes}"
                );
                if let Err(e) = self.commit(out, true).await {
                    tracing::error!(error = %e, "writing the tracker's state after a studio change failed");
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "a studio change could not be taken; the tracker goes on with the studio it had"
            ),
        }
    }

    async fn handle(&mut self, input: Input, now: DateTime<Utc>) {
        match input {
            Input::Samples(batch) => self.samples(batch, now).await,
            Input::Runs(batch) => self.run_events(batch, now).await,
            Input::Heartbeat(hb) => {
                let out = self.core.heartbeat(&hb, now);
                self.commit(out, false).await.unwrap_or(());
            }
            Input::Gate(g) => self.core.gate(&g),
            Input::DeadLetter => self.core.dead_letter(),
            Input::Record(req, reply) => {
                let sample = MetricSample {
                    metric: req.metric,
                    value: req.value,
                    at: None,
                    labels: req.labels,
                    unit: String::new(),
                };
                let answer = match self.core.sample(&sample, now) {
                    Ok(out) => match self.commit(out, true).await {
                        Ok(()) => encode(&v1::RecordMetricResponse {}),
                        Err(e) => error_reply(&e),
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "a metric record was refused");
                        error_reply(&e)
                    }
                };
                self.respond(&reply, answer).await;
            }
            Input::Get(req, reply) => {
                let answer = match self.core.get_metrics(&req, now) {
                    Ok(r) => encode(&r),
                    Err(e) => error_reply(&e),
                };
                self.respond(&reply, answer).await;
            }
            Input::Health(reply) => {
                let answer = encode(&self.core.health(now));
                self.respond(&reply, answer).await;
            }
            Input::Tick => {
                let prune = self.last_prune.is_none_or(|t| {
                    now - t
                        >= chrono::Duration::from_std(self.prune_every)
                            .unwrap_or(chrono::Duration::MAX)
                });
                if prune {
                    self.last_prune = Some(now);
                }
                match self.core.tick(now, prune) {
                    Ok(out) => self.commit(out, false).await.unwrap_or(()),
                    Err(e) => tracing::error!(error = %e, "the tracker's tick failed"),
                }
                if self.dirty
                    && let Err(e) = self.flush().await
                {
                    tracing::error!(error = %e, "flushing the tracker's store failed");
                }
            }
        }
    }

    async fn respond(&self, reply: &str, out: Outgoing) {
        if let Err(e) = self.bus.respond(reply, out).await {
            tracing::warn!(error = %e, "answering a tracker request failed");
        }
    }

    /// Samples from the stream: applied in order (a redelivery of one already
    /// applied is skipped), crossings published, writes flushed, then every
    /// delivery acknowledged; a sample that cannot be taken is dead-lettered.
    async fn samples(&mut self, batch: Vec<(MetricSample, Delivery)>, now: DateTime<Utc>) {
        let mut out = Outcome::default();
        let mut done = Vec::new();
        let mut refused = Vec::new();
        let applied_before = self.core.applied_seq();
        for (s, d) in batch {
            if d.delivered > 1 && d.stream_seq <= self.core.applied_seq() {
                done.push(d);
                continue;
            }
            match self.core.sample(&s, now) {
                Ok(o) => {
                    out.ops.extend(o.ops);
                    out.crossings.extend(o.crossings);
                    self.core.mark_applied(d.stream_seq, &mut out);
                    done.push(d);
                }
                Err(e) => refused.push((d, e.to_string())),
            }
        }
        let ok = self.commit(out, true).await.is_ok();
        if !ok {
            // Not stored: the redeliveries must be applied again, not skipped
            // (the in-memory series count them twice until a restart; losing
            // them would be worse).
            self.core.restore_applied(applied_before);
        }
        for d in done {
            let r = if ok {
                d.ack().await
            } else {
                d.nak(Some(Duration::from_secs(1))).await
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "settling a metric sample failed; it will come again");
            }
        }
        for (d, reason) in refused {
            tracing::warn!(subject = %d.message.subject, %reason, "dead-lettering a metric sample");
            if let Err(e) = d.term(reason).await {
                tracing::warn!(error = %e, "dead-lettering a metric sample failed");
            }
        }
    }

    /// Run events from the stream: each counted (a run or step already
    /// counted is skipped by its stored key, so a redelivery counts nothing),
    /// the writes flushed, then every delivery acknowledged; when the store
    /// fails, the rest are handed back to come again.
    async fn run_events(&mut self, batch: Vec<(v1::RunEvent, Delivery)>, now: DateTime<Utc>) {
        let mut ok = true;
        for (e, _) in &batch {
            // A succeeded run with deliverables: its pieces, from its outputs.
            let pieces = match self.core.wants_pieces(e) {
                Ok(true) => {
                    let steps = self
                        .core
                        .deliverable_steps(&e.workflow)
                        .unwrap_or_default()
                        .to_vec();
                    let n =
                        crate::pieces::pieces_of_run(self.bus.as_ref(), &e.run_id, &steps).await;
                    match self.core.deliverables_made(e, n, now) {
                        Ok(out) => self.commit(out, false).await,
                        Err(err) => Err(err.into()),
                    }
                }
                Ok(false) => Ok(()),
                Err(err) => Err(err.into()),
            };
            if let Err(err) = pieces {
                tracing::error!(run = %e.run_id, error = %err, "a run's deliverables could not be counted; it will come again");
                ok = false;
                break;
            }
            let counted = match self.core.run_event(e, now) {
                Ok(out) => self.commit(out, false).await,
                Err(err) => Err(err.into()),
            };
            if let Err(err) = counted {
                tracing::error!(run = %e.run_id, error = %err, "a run event could not be counted; it will come again");
                ok = false;
                break;
            }
        }
        if ok && self.dirty {
            ok = self.flush().await.is_ok();
        }
        for (_, d) in batch {
            let r = if ok {
                d.ack().await
            } else {
                d.nak(Some(Duration::from_secs(1))).await
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "settling a run event failed; it will come again");
            }
        }
    }

    /// Publishes the crossings, then writes (and, with `flush`, flushes) the store.
    async fn commit(&mut self, out: Outcome, flush: bool) -> Result<(), TrackerError> {
        for x in &out.crossings {
            let subject = subjects::metric_event(&x.metric);
            let id = format!(
                "{}@{}@{}",
                x.predicate,
                x.entered,
                x.at.as_ref()
                    .map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
                    .unwrap_or(0)
            );
            if let Err(e) = self.bus.publish_durable_proto(&subject, x, &id).await {
                tracing::warn!(error = %e, %subject, "storing a threshold event failed; publishing it without the stream");
                if let Err(e) = self.bus.publish_proto(&subject, x).await {
                    tracing::error!(error = %e, %subject, "publishing a threshold event failed");
                }
            }
        }
        if !out.ops.is_empty() {
            self.store.apply(TREE, out.ops)?;
            self.dirty = true;
        }
        if flush && self.dirty {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TrackerError> {
        let s = self.store.clone();
        tokio::task::spawn_blocking(move || s.flush())
            .await
            .map_err(|e| StoreError::from_message(format!("store flush task: {e}")))??;
        self.dirty = false;
        Ok(())
    }
}
