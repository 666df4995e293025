//! The router of a partitioned studio, run by the owner of partition 0: what
//! arrives on the unpartitioned subjects goes to its run's partition
//! (`concierto_core::partition::of`).
//!
//! ```text
//!  run.start        (RUNS)     StartRun   ──▶ run.start.<k>
//!  result.<role>    (RESULTS)  TaskResult ──▶ result.<role>.<k>   (workers that ignore Task.result_subject)
//!  feedback.in.>    (FEEDBACK) Feedback   ──▶ run.start.<k>       (as the StartRun of run feedback:<id>)
//! ```
//!
//! Each is published durably, then the original acknowledged; a crash in
//! between publishes it again with the same message id (`<id>~routed`: the
//! duplicate window is per stream, so the original id would be swallowed),
//! which the stream drops. What does not decode is dead-lettered.

use std::sync::Arc;
use std::time::Duration;

use concierto_bus::{Bus, BusError, Consumer, ConsumerSpec, Delivery, Outgoing, encode};
use concierto_core::partition;
use concierto_core::service::{ServiceHandle, StopSignal};
use concierto_core::subjects;
use concierto_proto::v1;

use crate::service::OrchestratorOptions;

/// Where a routed message goes and under which message id.
struct Route {
    subject: String,
    out: Outgoing,
}

/// Starts routing. Stops (after the messages in hand) when the handle is stopped.
pub(crate) async fn start(
    bus: Arc<dyn Bus>,
    partitions: u32,
    opts: &OrchestratorOptions,
) -> Result<ServiceHandle, BusError> {
    let spec = |durable: &str, filter: &str| {
        let mut s = ConsumerSpec::new(durable, filter);
        s.ack_wait = opts.ack_wait;
        s.max_deliver = 10;
        s.prefetch = opts.batch;
        s
    };
    let runs = bus
        .consumer(
            "RUNS",
            &spec("orchestrator-route-runs", subjects::RUN_START),
        )
        .await?;
    let results = bus
        .consumer("RESULTS", &spec("orchestrator-route-results", "result.*"))
        .await?;
    let feedback = bus
        .consumer(
            "FEEDBACK",
            &spec("orchestrator-route-feedback", subjects::FEEDBACK_IN),
        )
        .await?;
    let (handle, control) = ServiceHandle::new("orchestrator-router");
    let signal = control.signal.clone();
    let (wait, batch) = (opts.fetch_wait, opts.batch);
    let tasks = vec![
        tokio::spawn(route_loop::<v1::StartRun>(
            bus.clone(),
            runs,
            signal.clone(),
            (wait, batch),
            move |s, m| {
                let id = m.msg_id().unwrap_or(&s.run_id).to_string();
                Some(Route {
                    subject: subjects::run_start_for(&s.run_id, partitions),
                    out: forwarded(m).msg_id(format!("{id}~routed")),
                })
            },
        )),
        tokio::spawn(route_loop::<v1::TaskResult>(
            bus.clone(),
            results,
            signal.clone(),
            (wait, batch),
            move |r, m| {
                let k = partition::of(&r.run_id, partitions);
                let mut out = forwarded(m);
                if let Some(id) = m.msg_id() {
                    out = out.msg_id(format!("{id}~routed"));
                }
                Some(Route {
                    subject: subjects::result_for(&r.role, k, partitions),
                    out,
                })
            },
        )),
        tokio::spawn(route_loop::<v1::Feedback>(
            bus.clone(),
            feedback,
            signal.clone(),
            (wait, batch),
            move |f, m| {
                let start = crate::feedback::feedback_start(f, chrono::Utc::now())?;
                let mut out = encode(&start).msg_id(start.run_id.clone());
                if let Some(tp) = m.traceparent() {
                    out = out.traceparent(tp);
                }
                Some(Route {
                    subject: subjects::run_start_for(&start.run_id, partitions),
                    out,
                })
            },
        )),
    ];
    tokio::spawn(async move {
        let mut result = Ok(());
        for t in tasks {
            if let Err(e) = t.await {
                result = Err(format!("a router task failed: {e}"));
            }
        }
        control.finished(result);
    });
    Ok(handle)
}

/// The message as it came (payload and headers, its message id dropped).
fn forwarded(m: &concierto_bus::Message) -> Outgoing {
    let mut out = Outgoing::new(m.payload.clone());
    for (k, v) in m.headers.iter() {
        if k != concierto_bus::MSG_ID {
            out = out.header(k, v);
        }
    }
    out
}

async fn route_loop<M: concierto_bus::ProtoMessage>(
    bus: Arc<dyn Bus>,
    consumer: Consumer,
    signal: StopSignal,
    (wait, batch): (Duration, usize),
    route: impl Fn(M, &concierto_bus::Message) -> Option<Route> + Send + 'static,
) {
    while !signal.is_stopped() {
        let got = match consumer.fetch_proto::<M>(batch, wait).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "the partition router cannot fetch");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for (m, d) in got {
            match route(m, &d.message) {
                Some(r) => settle(&bus, r, d).await,
                None => {
                    if let Err(e) = d.term("nothing to route: feedback without an id").await {
                        tracing::warn!(error = %e, "dead-lettering an unroutable message failed");
                    }
                }
            }
        }
    }
}

async fn settle(bus: &Arc<dyn Bus>, r: Route, d: Delivery) {
    match bus.publish_durable(&r.subject, r.out).await {
        Ok(_) => {
            if let Err(e) = d.ack().await {
                tracing::warn!(error = %e, "acknowledging a routed message failed; it is routed again (and dropped as a duplicate)");
            }
        }
        Err(e) => {
            tracing::warn!(subject = %r.subject, error = %e, "routing a message to its partition failed; trying again");
            let _ = d.nak(Some(Duration::from_secs(1))).await;
        }
    }
}
