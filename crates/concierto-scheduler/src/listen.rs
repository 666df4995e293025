//! The bus side: one task per subscription hands each message to the actor and, for
//! requests, sends back its answer; one task stops everything when asked.

use std::future::Future;
use std::sync::Arc;

use actix::Addr;
use concierto_bus::{Bus, BusExt, Message, Outgoing, ProtoMessage, TypedSubscription};
use concierto_core::service::{ServiceControl, StopSignal};
use concierto_core::store::KvStore;
use concierto_core::subjects::ERROR_HEADER;
use concierto_proto::v1::{
    self, ContentItem, FireTriggerRequest, FireTriggerResponse, ListTriggersRequest,
    ThresholdCrossed,
};
use tokio::task::JoinHandle;

use crate::SchedulerError;
use crate::actor::{Content, FireNow, List, SchedulerActor, Shutdown, Threshold};

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

/// Logs the outcome of an event's fires.
fn log_failures(
    what: &str,
    results: Result<Vec<Result<String, SchedulerError>>, actix::MailboxError>,
) {
    match results {
        Ok(results) => {
            for e in results.into_iter().filter_map(Result::err) {
                tracing::error!(event = what, error = %e, "an event trigger did not fire");
            }
        }
        Err(e) => tracing::error!(event = what, error = %e, "the scheduler actor is gone"),
    }
}

/// `content.ingested.>` → new-content triggers.
pub(crate) async fn content(
    sub: TypedSubscription<ContentItem>,
    addr: Addr<SchedulerActor>,
    stop: StopSignal,
) {
    each(sub, stop, |item, _| {
        let addr = addr.clone();
        async move { log_failures("content", addr.send(Content(item)).await) }
    })
    .await;
}

/// `event.metric.>` → threshold triggers.
pub(crate) async fn metrics(
    sub: TypedSubscription<ThresholdCrossed>,
    addr: Addr<SchedulerActor>,
    stop: StopSignal,
) {
    each(sub, stop, |crossed, _| {
        let addr = addr.clone();
        async move { log_failures("threshold", addr.send(Threshold(crossed)).await) }
    })
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
