//! The bus side: one task per durable event consumer pulls events, hands each to the
//! actor and settles it by the outcome; one task per request subscription hands each
//! request to the actor and sends back its answer; one task stops everything when asked.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use concierto_bus::{
    Bus, BusExt, Consumer, Delivery, Message, Outgoing, ProtoMessage, TypedSubscription,
};
use concierto_core::service::{ServiceControl, StopSignal};
use concierto_core::store::KvStore;
use concierto_core::subjects::ERROR_HEADER;
use concierto_proto::v1::{
    self, ContentItem, FireTriggerRequest, FireTriggerResponse, ListTriggersRequest,
    PauseTriggerRequest, PauseTriggerResponse, ThresholdCrossed,
};
use tokio::task::JoinHandle;

use crate::SchedulerError;
use crate::actor::{Content, FireNow, List, SchedulerActor, SetPaused, Shutdown, Threshold};

/// Hands every message of `sub` to `handle`, one at a time, until the subscription ends
/// or a stop is asked for (the message in hand is finished first).
async fn each<M, F, Fut>(mut sub: TypedSubscription<M>, mut stop: StopSignal, mut handle: F)
where
    M: ProtoMessage,
    F: FnMut(M, Message) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::select! {
            biased;
            _ = stop.stopped() => break,
            next = sub.next() => match next {
                Some((msg, raw)) => handle(msg, raw).await,
                None => {
                    tracing::warn!("a scheduler subscription ended; its messages are no longer handled");
                    break;
                }
            },
        }
    }
}

/// How the event consumers pull.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pull {
    /// The consumers' `ack_wait`; an event in hand is kept alive every third of it.
    pub ack_wait: Duration,
    /// How long one pull waits when there is nothing.
    pub fetch_wait: Duration,
}

/// Events pulled at once. They are handled one at a time; the ones waiting are kept alive.
const BATCH: usize = 8;

/// What one event's fires came to: each fire's run id or failure.
type Fires = Result<Vec<Result<String, SchedulerError>>, actix::MailboxError>;

/// The delay before an event whose fires failed comes back: 1 s, doubling per delivery,
/// at most a minute.
fn retry_delay(delivered: u64) -> Duration {
    let doublings = delivered.saturating_sub(1).min(6);
    Duration::from_secs(1 << doublings).min(Duration::from_secs(60))
}

/// Pulls events of type `M` from `consumer` until a stop and hands each to `fire` (the
/// actor), one at a time, in stream order; then settles it by the outcome ([`settle`]).
async fn events<M, F, Fut>(
    consumer: Consumer,
    mut stop: StopSignal,
    pull: Pull,
    what: &'static str,
    mut fire: F,
) where
    M: ProtoMessage,
    F: FnMut(M) -> Fut,
    Fut: Future<Output = Fires>,
{
    while !stop.is_stopped() {
        // A pull cut short could leave an event delivered to nobody until its ack_wait:
        // after a stop the pull under way may end by itself (within fetch_wait), and is
        // abandoned only a second later (the NATS bus bounds a pull when the server is
        // gone).
        let fetched = {
            let mut stop = stop.clone();
            let linger = pull.fetch_wait + Duration::from_secs(1);
            tokio::select! {
                got = consumer.fetch_proto::<M>(BATCH, pull.fetch_wait) => got,
                _ = async move {
                    stop.stopped().await;
                    tokio::time::sleep(linger).await;
                } => break,
            }
        };
        let batch = match fetched {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(event = what, error = %e, "pulling events failed; trying again");
                tokio::select! {
                    _ = stop.stopped() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        let (messages, mut held): (Vec<M>, VecDeque<Delivery>) = batch.into_iter().unzip();
        for msg in messages {
            let Some(delivery) = held.pop_front() else {
                break;
            };
            if stop.is_stopped() {
                // Stopping: what was pulled and not handled goes back at once.
                held.push_front(delivery);
                for d in held.drain(..) {
                    if let Err(e) = d.nak(None).await {
                        tracing::warn!(event = what, error = %e, "could not hand an event back; it returns after ack_wait");
                    }
                }
                break;
            }
            let outcome = keep_alive(&delivery, &held, pull.ack_wait, fire(msg)).await;
            if settle(what, delivery, outcome).await.is_break() {
                for d in held.drain(..) {
                    if let Err(e) = d.nak(None).await {
                        tracing::warn!(event = what, error = %e, "could not hand an event back; it returns after ack_wait");
                    }
                }
                return;
            }
        }
    }
}

/// Runs `work`, sending `in_progress` for `delivery` and the deliveries waiting behind it
/// every third of `ack_wait`, so that none is delivered again while this one is handled.
async fn keep_alive<T>(
    delivery: &Delivery,
    waiting: &VecDeque<Delivery>,
    ack_wait: Duration,
    work: impl Future<Output = T>,
) -> T {
    let every = (ack_wait / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                for d in std::iter::once(delivery).chain(waiting) {
                    if let Err(e) = d.in_progress().await {
                        tracing::debug!(error = %e, "could not extend an event's ack_wait");
                    }
                }
            }
        }
    }
}

/// Settles an event by what its fires came to:
///
/// - every fire published and recorded (or none due): acknowledged, never delivered again;
/// - a fire that cannot be made exactly once ([`SchedulerError::InvalidEvent`]):
///   dead-lettered with the reason;
/// - any other failure: handed back (nak) with [`retry_delay`], so it fires again; the
///   fires that did go out come back with the same run ids and are dropped as duplicates.
///
/// Breaks when the actor is gone (the event is handed back).
async fn settle(what: &str, delivery: Delivery, outcome: Fires) -> ControlFlow<()> {
    let subject = delivery.message.subject.clone();
    let delivered = delivery.delivered;
    let results = match outcome {
        Ok(results) => results,
        Err(e) => {
            tracing::error!(event = what, %subject, error = %e, "the scheduler actor is gone; the event is handed back");
            if let Err(e) = delivery.nak(None).await {
                tracing::warn!(event = what, %subject, error = %e, "could not hand the event back; it returns after ack_wait");
            }
            return ControlFlow::Break(());
        }
    };
    let invalid = results.iter().find_map(|r| match r {
        Err(SchedulerError::InvalidEvent(reason)) => Some(reason.clone()),
        _ => None,
    });
    if let Some(reason) = invalid {
        tracing::error!(event = what, %subject, %reason, "dead-lettering an event that cannot fire exactly once");
        if let Err(e) = delivery.term(reason).await {
            tracing::warn!(event = what, %subject, error = %e, "could not dead-letter the event; it returns after ack_wait");
        }
        return ControlFlow::Continue(());
    }
    let failures: Vec<&SchedulerError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if failures.is_empty() {
        if let Err(e) = delivery.ack().await {
            tracing::warn!(event = what, %subject, error = %e, "could not acknowledge an event; it comes back, and its fires are dropped as duplicates");
        }
        return ControlFlow::Continue(());
    }
    let delay = retry_delay(delivered);
    for e in failures {
        tracing::error!(event = what, %subject, delivered, retry_in = ?delay, error = %e, "an event trigger did not fire; the event comes back");
    }
    if let Err(e) = delivery.nak(Some(delay)).await {
        tracing::warn!(event = what, %subject, error = %e, "could not hand the event back; it returns after ack_wait");
    }
    ControlFlow::Continue(())
}

/// `content.ingested.>` (durable [`crate::CONTENT_DURABLE`]) → new-content triggers.
pub(crate) async fn content(
    consumer: Consumer,
    addr: Addr<SchedulerActor>,
    stop: StopSignal,
    pull: Pull,
) {
    events(consumer, stop, pull, "content", |item: ContentItem| {
        addr.send(Content(item))
    })
    .await;
}

/// `event.metric.>` (durable [`crate::METRICS_DURABLE`]) → threshold triggers.
pub(crate) async fn metrics(
    consumer: Consumer,
    addr: Addr<SchedulerActor>,
    stop: StopSignal,
    pull: Pull,
) {
    events(
        consumer,
        stop,
        pull,
        "threshold",
        |crossed: ThresholdCrossed| addr.send(Threshold(crossed)),
    )
    .await;
}

/// Answers a request with `Concierto-Error: <header>` and an empty body.
async fn respond_error(bus: &dyn Bus, reply: &str, header: String) {
    let out = Outgoing::new(Vec::new()).header(ERROR_HEADER, header);
    if let Err(e) = bus.respond(reply, out).await {
        tracing::warn!(error = %e, "could not answer a request");
    }
}

/// `scheduler.fire` → fire a trigger by hand, answer with its run id.
pub(crate) async fn fire(
    sub: TypedSubscription<FireTriggerRequest>,
    addr: Addr<SchedulerActor>,
    bus: Arc<dyn Bus>,
    stop: StopSignal,
) {
    each(sub, stop, |req, raw| {
        let addr = addr.clone();
        let bus = bus.clone();
        async move {
            let priority =
                v1::Priority::try_from(req.priority).unwrap_or(v1::Priority::Unspecified);
            let name = req.name;
            tracing::info!(trigger = %name, "fire requested by hand");
            let result = addr
                .send(FireNow {
                    name: name.clone(),
                    priority,
                })
                .await
                .unwrap_or(Err(SchedulerError::Stopped));
            let Some(reply) = raw.reply else {
                if let Err(e) = result {
                    tracing::warn!(trigger = %name, error = %e, "fire by hand failed (no reply subject to tell)");
                }
                return;
            };
            match result {
                Ok(run_id) => {
                    if let Err(e) = bus
                        .respond_proto(&reply, &FireTriggerResponse { run_id })
                        .await
                    {
                        tracing::warn!(error = %e, "could not answer a fire request");
                    }
                }
                Err(e) => {
                    tracing::warn!(trigger = %name, error = %e, "fire by hand refused");
                    respond_error(bus.as_ref(), &reply, e.reply_header()).await;
                }
            }
        }
    })
    .await;
}

/// `scheduler.pause` → pause or resume a trigger, answer with the trigger as listed.
pub(crate) async fn pause(
    sub: TypedSubscription<PauseTriggerRequest>,
    addr: Addr<SchedulerActor>,
    bus: Arc<dyn Bus>,
    stop: StopSignal,
) {
    each(sub, stop, |req, raw| {
        let addr = addr.clone();
        let bus = bus.clone();
        async move {
            let PauseTriggerRequest {
                name,
                paused,
                requested_by,
            } = req;
            let result = addr
                .send(SetPaused {
                    name: name.clone(),
                    paused,
                    by: requested_by,
                })
                .await
                .unwrap_or(Err(SchedulerError::Stopped));
            let Some(reply) = raw.reply else {
                if let Err(e) = result {
                    tracing::warn!(trigger = %name, error = %e, "pause or resume failed (no reply subject to tell)");
                }
                return;
            };
            match result {
                Ok(trigger) => {
                    let resp = PauseTriggerResponse {
                        trigger: Some(trigger),
                    };
                    if let Err(e) = bus.respond_proto(&reply, &resp).await {
                        tracing::warn!(error = %e, "could not answer a pause request");
                    }
                }
                Err(e) => {
                    tracing::warn!(trigger = %name, error = %e, paused, "pause or resume refused");
                    respond_error(bus.as_ref(), &reply, e.reply_header()).await;
                }
            }
        }
    })
    .await;
}

/// `scheduler.triggers` → every trigger with its next and last fire and counters.
pub(crate) async fn list(
    sub: TypedSubscription<ListTriggersRequest>,
    addr: Addr<SchedulerActor>,
    bus: Arc<dyn Bus>,
    stop: StopSignal,
) {
    each(sub, stop, |_, raw| {
        let addr = addr.clone();
        let bus = bus.clone();
        async move {
            let Some(reply) = raw.reply else {
                return;
            };
            match addr.send(List).await {
                Ok(resp) => {
                    if let Err(e) = bus.respond_proto(&reply, &resp).await {
                        tracing::warn!(error = %e, "could not answer a list request");
                    }
                }
                Err(_) => {
                    respond_error(bus.as_ref(), &reply, SchedulerError::Stopped.reply_header())
                        .await
                }
            }
        }
    })
    .await;
}

/// Waits for a stop, then lets the listeners finish the message in hand, stops the actor
/// after its work in flight, flushes the store and reports.
pub(crate) async fn supervise(
    control: ServiceControl,
    listeners: Vec<JoinHandle<()>>,
    addr: Addr<SchedulerActor>,
    store: Arc<dyn KvStore>,
    instance: String,
) {
    let mut signal = control.signal.clone();
    signal.stopped().await;
    tracing::info!(instance = %instance, "scheduler stopping");
    for listener in listeners {
        if let Err(e) = listener.await {
            tracing::warn!(error = %e, "a scheduler listener ended badly");
        }
    }
    // Queued behind any work in flight: the actor stops once it is done.
    let _ = addr.send(Shutdown).await;
    let result = store.flush().map_err(|e| e.to_string());
    control.finished(result);
}
