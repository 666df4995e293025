//! The publisher as a service: one actix actor owning the [`Book`], fed by an
//! intake loop (the durable consumer on `deliverable.>`, acknowledged once a
//! deliverable is stored and flushed), a worker loop (the outbox: attempts due,
//! carried out concurrently, settled and announced on
//! `event.deliverable.<kind>`) and `publish.list` requests.
//!
//! A changed studio is taken live: its `publishers` (and the workflows'
//! `deliverables`) apply to the next deliverable stored and the next attempt;
//! a queued job whose publisher left the studio fails with that reason.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use concierto_bus::{
    Bus, BusExt, ConsumerSpec, Outgoing, StreamLimits, encode, ensure_standard_streams,
};
use concierto_core::clock::SharedClock;
use concierto_core::config::{Publishing, Studio};
use concierto_core::service::{ServiceHandle, StopSignal};
use concierto_core::store::{KvStore, StoreError};
use concierto_core::subjects;
use concierto_proto::v1;

use crate::book::{Attempt, Backoff, Book, BookError, Job, LIBRARY};
use crate::sinks::Sinks;

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The bus failed.
    #[error("bus: {0}")]
    Bus(#[from] concierto_bus::BusError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Retry delays of every publisher.
    pub backoff: Backoff,
    /// How often the outbox is looked at.
    pub tick: Duration,
    /// Longest wait of one fetch from the bus.
    pub fetch_wait: Duration,
    /// Deliverables taken per fetch.
    pub batch: usize,
    /// Attempts carried out at once.
    pub parallel: usize,
    /// `ack_wait` of the consumer.
    pub ack_wait: Duration,
    /// Time for the ingest service to answer `library.put`.
    pub library_timeout: Duration,
    /// Stream limits (from `server.bus`).
    pub streams: StreamLimits,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            backoff: Backoff::default(),
            tick: Duration::from_millis(500),
            fetch_wait: Duration::from_millis(500),
            batch: 32,
            parallel: 16,
            ack_wait: Duration::from_secs(30),
            library_timeout: Duration::from_secs(10),
            streams: StreamLimits::default(),
        }
    }
}

struct Publisher {
    book: Book,
    clock: SharedClock,
}

impl Actor for Publisher {
    type Context = Context<Self>;
}

enum Ask {
    Accept(Vec<v1::Deliverable>),
    Due(usize),
    Settle(Job, Attempt),
    List(v1::ListDeliverablesRequest),
}

enum Answer {
    /// Per deliverable: stored (or known), or refused for good with why.
    Accepted(Vec<Result<(), String>>),
    Due(Vec<(Job, v1::Deliverable)>, DateTime<Utc>),
    Settled(Vec<v1::PublishOutcome>),
    List(v1::ListDeliverablesResponse),
}

impl actix::Message for Ask {
    type Result = Result<Answer, BookError>;
}

impl Handler<Ask> for Publisher {
    type Result = Result<Answer, BookError>;

    fn handle(&mut self, ask: Ask, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now();
        match ask {
            Ask::Accept(ds) => {
                let mut out = Vec::with_capacity(ds.len());
                for d in ds {
                    let id = d.id.clone();
                    match self.book.accept(d, now) {
                        Ok(new) => {
                            if new {
                                tracing::debug!(deliverable = %id, "deliverable stored");
                            }
                            out.push(Ok(()));
                        }
                        Err(BookError::Invalid(why)) => out.push(Err(why)),
                        Err(e) => return Err(e),
                    }
                }
                Ok(Answer::Accepted(out))
            }
            Ask::Due(max) => Ok(Answer::Due(self.book.due(now, max)?, now)),
            Ask::Settle(job, attempt) => Ok(Answer::Settled(self.book.settle(job, attempt, now)?)),
            Ask::List(req) => Ok(Answer::List(self.book.list(&req, now)?)),
        }
    }
}

async fn ask(addr: &Addr<Publisher>, q: Ask) -> Result<Answer, BookError> {
    addr.send(q)
        .await
        .map_err(|e| BookError::Store(StoreError::from_message(format!("publisher actor: {e}"))))?
}

async fn flush(store: &Arc<dyn KvStore>) -> Result<(), String> {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("store flush task: {e}")),
    }
}

/// Starts the publisher. Must run inside an actix `System`.
pub async fn start(
    studio: Arc<Studio>,
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: PublisherOptions,
) -> Result<ServiceHandle, PublishError> {
    ensure_standard_streams(bus.as_ref(), &opts.streams).await?;
    let mut spec = ConsumerSpec::new("publisher", subjects::DELIVERABLES);
    spec.ack_wait = opts.ack_wait;
    spec.max_deliver = 20;
    let consumer = bus.consumer("DELIVERABLES", &spec).await?;
    let first: Arc<Publishing> = Arc::new(studio.publishing.clone());
    let publishing = Arc::new(RwLock::new(first.clone()));
    let addr = Publisher {
        book: Book::new(store.clone(), first, opts.backoff),
        clock: clock.clone(),
    }
    .start();
    let (handle, control) = ServiceHandle::new("publisher");
    let handle = {
        let (addr, publishing) = (addr.clone(), publishing.clone());
        handle.on_studio_change(move |studio: Arc<Studio>| {
            let next = Arc::new(studio.publishing.clone());
            tracing::info!(
                publishers = next.publishers.len(),
                workflows = next.deliverables.len(),
                "publisher took the changed studio"
            );
            match publishing.write() {
                Ok(mut g) => *g = next.clone(),
                Err(p) => *p.into_inner() = next.clone(),
            }
            addr.do_send(SetPublishing(next));
        })
    };
    let signal = control.signal.clone();
    let sinks = Sinks::new(bus.clone(), opts.library_timeout);

    // Intake: store, flush, then acknowledge.
    let intake = {
        let (addr, store, signal) = (addr.clone(), store.clone(), signal.clone());
        let (batch, wait) = (opts.batch, opts.fetch_wait);
        tokio::spawn(async move {
            while !signal.is_stopped() {
                let got = match consumer.fetch_proto::<v1::Deliverable>(batch, wait).await {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::error!(error = %e, "fetching deliverables failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if got.is_empty() {
                    continue;
                }
                let (ds, deliveries): (Vec<_>, Vec<_>) = got.into_iter().unzip();
                let stored = match ask(&addr, Ask::Accept(ds)).await {
                    Ok(Answer::Accepted(r)) => match flush(&store).await {
                        Ok(()) => Some(r),
                        Err(e) => {
                            tracing::error!(error = %e, "flushing the publisher's store failed");
                            None
                        }
                    },
                    Ok(_) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "storing deliverables failed");
                        None
                    }
                };
                match stored {
                    Some(results) => {
                        for (d, r) in deliveries.into_iter().zip(results) {
                            let settled = match r {
                                Ok(()) => d.ack().await,
                                Err(why) => {
                                    tracing::error!(reason = %why, "a deliverable was refused");
                                    d.term(why).await
                                }
                            };
                            if let Err(e) = settled {
                                tracing::warn!(error = %e, "settling a deliverable failed; it comes again");
                            }
                        }
                    }
                    None => {
                        for d in deliveries {
                            let _ = d.nak(Some(Duration::from_secs(1))).await;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        })
    };

    // The outbox: attempts due, carried out concurrently, then settled.
    let worker = {
        let (addr, store, bus, mut signal) =
            (addr.clone(), store.clone(), bus.clone(), signal.clone());
        let (tick, parallel) = (opts.tick, opts.parallel.max(1));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = signal.stopped() => break,
                    _ = interval.tick() => {}
                }
                let (due, now) = match ask(&addr, Ask::Due(parallel)).await {
                    Ok(Answer::Due(d, now)) => (d, now),
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the publisher's outbox failed");
                        continue;
                    }
                };
                if due.is_empty() {
                    continue;
                }
                let publishing = match publishing.read() {
                    Ok(g) => g.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                let attempts = due.into_iter().map(|(job, d)| {
                    let sinks = sinks.clone();
                    let def = publishing.publishers.get(&job.publisher).cloned();
                    async move {
                        let attempt = if job.publisher == LIBRARY {
                            sinks.library(&d).await
                        } else {
                            match def {
                                Some(p) => sinks.publish(&p, &d, now).await,
                                None => Attempt::Failed(format!(
                                    "publisher {:?} is no longer in the studio",
                                    job.publisher
                                )),
                            }
                        };
                        (job, attempt)
                    }
                });
                // A stop does not wait for attempts under way (a library put
                // or a webhook may take its whole timeout): they stay due in
                // the outbox and are made again after the restart (a webhook
                // receiver sees the same Idempotency-Key).
                let done = tokio::select! {
                    _ = signal.stopped() => break,
                    d = futures::future::join_all(attempts) => d,
                };
                let mut outcomes = Vec::new();
                for (job, attempt) in done {
                    tracing::debug!(deliverable = %job.deliverable_id, publisher = %job.publisher, ?attempt, "publish attempt");
                    match ask(&addr, Ask::Settle(job, attempt)).await {
                        Ok(Answer::Settled(o)) => outcomes.extend(o),
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "recording an outcome failed"),
                    }
                }
                if let Err(e) = flush(&store).await {
                    tracing::error!(error = %e, "flushing the publisher's store failed");
                }
                for o in outcomes {
                    if let Err(e) = bus
                        .publish_proto(&subjects::deliverable_event(&o.kind), &o)
                        .await
                    {
                        tracing::warn!(error = %e, "announcing an outcome failed");
                    }
                }
            }
        })
    };

    // `publish.list`.
    let mut sub = bus
        .queue_subscribe_proto::<v1::ListDeliverablesRequest>(subjects::PUBLISH_LIST, "publisher")
        .await?;
    let queries = {
        let (addr, bus, mut signal) = (addr.clone(), bus.clone(), signal.clone());
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = signal.stopped() => break,
                    n = sub.next() => n,
                };
                let Some((req, msg)) = next else { break };
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                let out = match ask(&addr, Ask::List(req)).await {
                    Ok(Answer::List(r)) => encode(&r),
                    Ok(_) => error_reply("internal", "unexpected answer"),
                    Err(BookError::Invalid(m)) => error_reply("invalid_argument", &m),
                    Err(e) => error_reply("internal", &e.to_string()),
                };
                if let Err(e) = bus.respond(&reply, out).await {
                    tracing::warn!(error = %e, "answering publish.list failed");
                }
            }
        })
    };

    tokio::spawn(async move {
        let mut signal: StopSignal = control.signal.clone();
        signal.stopped().await;
        let mut result = Ok(());
        for t in [intake, worker, queries] {
            if let Err(e) = t.await {
                result = Err(format!("publisher task failed: {e}"));
            }
        }
        if let Err(e) = store.flush() {
            result = Err(format!("final flush: {e}"));
        }
        addr.do_send(StopActor);
        tracing::info!("publisher stopped");
        control.finished(result);
    });
    Ok(handle)
}

fn error_reply(code: &str, message: &str) -> Outgoing {
    Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, format!("{code}: {message}"))
}

/// The publishers of a changed studio.
struct SetPublishing(Arc<Publishing>);

impl actix::Message for SetPublishing {
    type Result = ();
}

impl Handler<SetPublishing> for Publisher {
    type Result = ();
    fn handle(&mut self, msg: SetPublishing, _: &mut Context<Self>) {
        self.book.set_publishing(msg.0);
    }
}

struct StopActor;

impl actix::Message for StopActor {
    type Result = ();
}

impl Handler<StopActor> for Publisher {
    type Result = ();
    fn handle(&mut self, _: StopActor, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
