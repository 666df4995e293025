//! The feedback router as a service: one actix actor owning the [`Engine`],
//! fed by the runs' events (`run.event.>`, feedback runs only: each one
//! fetches the run from the orchestrator), a tick (due retries, a poll of
//! runs still waiting, so a missed event delays and loses nothing) and the
//! answers of its own requests; it stores every change of an item in its sled
//! store (tree [`ITEMS_TREE`], the outbox: a reply pending there is sent after
//! a restart) before acting on it, and answers `feedback.reply.get`.
//!
//! [`start_live`] also takes a changed studio: the options computed from it
//! (the `user_feedback` folder answered feedback goes to, the channels'
//! senders) apply to the next export and the next send; items in flight keep
//! their state. Which specialists answer a category (`feedback_capture.routing`)
//! and who categorises (`processor`) are the orchestrator's: the router
//! reports the roles the run's `respond-<role>` steps name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use concierto_bus::{Bus, BusExt, Outgoing, encode};
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::feedback::FEEDBACK_WORKFLOW;
use concierto_core::service::ServiceHandle;
use concierto_core::store::KvStore;
use concierto_core::subjects;
use concierto_proto::v1;

use crate::engine::{Effects, Engine, Item, RetryPolicy, SendResult};
use crate::export;
use crate::send::Senders;

/// Store tree of the router's items (key = feedback id, value = JSON [`Item`]).
pub const ITEMS_TREE: &str = "router_items";

/// How the router runs.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// How often due retries are sent and waiting runs polled.
    pub tick: Duration,
    /// Most waiting runs polled per tick.
    pub max_polls: usize,
    /// How long a bus request (a run, a feedback record) may take.
    pub request_timeout: Duration,
    /// Retries of a reply.
    pub retry: RetryPolicy,
    /// Items done kept in memory (older ones are answered from the store).
    pub keep_done: usize,
    /// The `user_feedback` source's folder answered feedback is written to.
    pub export_dir: Option<PathBuf>,
    /// The channels' senders.
    pub senders: Senders,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            tick: Duration::from_secs(5),
            max_polls: 20,
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            keep_done: 1000,
            export_dir: None,
            senders: Senders::new(None, None, Duration::from_secs(30)),
        }
    }
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The store could not be read.
    #[error("router store: {0}")]
    Store(#[from] concierto_core::store::StoreError),
    /// The bus refused a subscription.
    #[error("bus: {0}")]
    Bus(#[from] concierto_bus::BusError),
    /// An option is out of range.
    #[error("router options: {0}")]
    Config(String),
}

struct Router {
    engine: Engine,
    store: Arc<dyn KvStore>,
    bus: Arc<dyn Bus>,
    clock: SharedClock,
    opts: RouterOptions,
}

impl Actor for Router {
    type Context = Context<Self>;
}

enum Input {
    Run(v1::Run),
    Feedback(String, Option<v1::Feedback>),
    FetchFailed(String),
    Sent(String, SendResult),
    Tick,
}

impl actix::Message for Input {
    type Result = ();
}

struct GetReply(String);

impl actix::Message for GetReply {
    type Result = Option<v1::FeedbackReply>;
}

/// The options a changed studio gives: where answered feedback is exported,
/// how replies are sent.
struct SetOptions {
    export_dir: Option<PathBuf>,
    senders: Senders,
}

impl actix::Message for SetOptions {
    type Result = ();
}

impl Handler<SetOptions> for Router {
    type Result = ();
    fn handle(&mut self, msg: SetOptions, _: &mut Context<Self>) {
        tracing::info!(
            export_dir = ?msg.export_dir,
            slack = msg.senders.slack.is_some(),
            smtp = ?msg.senders.smtp.as_ref().map(|s| format!("{}:{}", s.host, s.port)),
            "feedback router took the changed studio"
        );
        self.opts.export_dir = msg.export_dir;
        self.opts.senders = msg.senders;
    }
}

struct StopActor;

impl actix::Message for StopActor {
    type Result = ();
}

impl Handler<StopActor> for Router {
    type Result = ();
    fn handle(&mut self, _: StopActor, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<GetReply> for Router {
    type Result = Option<v1::FeedbackReply>;
    fn handle(&mut self, msg: GetReply, _: &mut Context<Self>) -> Self::Result {
        if let Some(i) = self.engine.item(&msg.0) {
            return Some(i.to_reply());
        }
        match self.store.get(ITEMS_TREE, msg.0.as_bytes()) {
            Ok(Some(v)) => serde_json::from_slice::<Item>(&v)
                .ok()
                .map(|i| i.to_reply()),
            _ => None,
        }
    }
}

impl Handler<Input> for Router {
    type Result = ();
    fn handle(&mut self, input: Input, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let fx = match input {
            Input::Run(run) => self.engine.on_run(&run, now),
            Input::Feedback(id, fb) => self.engine.on_feedback(&id, fb, now),
            Input::FetchFailed(id) => {
                self.engine.fetch_failed(&id);
                Effects::default()
            }
            Input::Sent(id, r) => self.engine.on_sent(&id, r, now),
            Input::Tick => self.engine.tick(now, self.opts.max_polls),
        };
        self.perform(fx, ctx.address());
    }
}

impl Router {
    /// Saves first (an unsaved change is never acted on), then does the rest.
    fn perform(&mut self, fx: Effects, me: Addr<Router>) {
        for item in &fx.save {
            let saved = serde_json::to_vec(item)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    self.store
                        .put(ITEMS_TREE, item.feedback_id.as_bytes(), &v)
                        .and_then(|_| self.store.flush())
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = saved {
                // The item stays in memory; the next change saves it again.
                tracing::error!(feedback = %item.feedback_id, error = %e, "saving a router item failed");
            }
        }
        let timeout = self.opts.request_timeout;
        for id in fx.fetch_feedback {
            let (bus, me) = (self.bus.clone(), me.clone());
            tokio::spawn(async move {
                let req = v1::GetFeedbackRequest {
                    feedback_id: id.clone(),
                };
                let reply = bus
                    .request(subjects::FEEDBACK_GET, encode(&req), timeout)
                    .await;
                let input = match reply {
                    Ok(msg) => match msg.headers.get(subjects::ERROR_HEADER) {
                        Some(err) if err.starts_with("not_found") => Input::Feedback(id, None),
                        Some(err) => {
                            tracing::warn!(feedback = %id, error = %err, "feedback.get failed");
                            Input::FetchFailed(id)
                        }
                        None => match prost::Message::decode(msg.payload.as_ref()) {
                            Ok(v1::GetFeedbackResponse { feedback, .. }) => {
                                Input::Feedback(id, feedback)
                            }
                            Err(_) => Input::FetchFailed(id),
                        },
                    },
                    Err(e) => {
                        tracing::debug!(feedback = %id, error = %e, "feedback.get failed");
                        Input::FetchFailed(id)
                    }
                };
                me.do_send(input);
            });
        }
        for run_id in fx.fetch_runs {
            let (bus, me) = (self.bus.clone(), me.clone());
            tokio::spawn(async move { fetch_run(bus, me, run_id, timeout).await });
        }
        for (subject, routed) in fx.routed {
            let bus = self.bus.clone();
            tokio::spawn(async move {
                if let Err(e) = bus.publish(&subject, encode(&routed)).await {
                    tracing::warn!(%subject, error = %e, "publishing routed feedback failed");
                }
            });
        }
        for m in fx.metrics {
            let bus = self.bus.clone();
            tokio::spawn(async move {
                if let Err(e) = bus
                    .publish_durable(&subjects::metric_sample(&m.metric), encode(&m))
                    .await
                {
                    tracing::warn!(metric = %m.metric, error = %e, "publishing a metric sample failed");
                }
            });
        }
        for s in fx.send {
            let (senders, me) = (self.opts.senders.clone(), me.clone());
            tokio::spawn(async move {
                let id = s.feedback.feedback_id.clone();
                let r = senders.send(&s).await;
                me.do_send(Input::Sent(id, r));
            });
        }
        if let Some(dir) = &self.opts.export_dir {
            for item in fx.export {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = export::write(&dir, &item) {
                        tracing::warn!(feedback = %item.feedback_id, error = %e, "exporting answered feedback failed");
                    }
                });
            }
        }
    }
}

async fn fetch_run(bus: Arc<dyn Bus>, me: Addr<Router>, run_id: String, timeout: Duration) {
    let got = bus
        .request_proto::<_, v1::GetRunResponse>(
            subjects::ORCHESTRATOR_GET_RUN,
            &v1::GetRunRequest {
                run_id: run_id.clone(),
            },
            timeout,
        )
        .await;
    match got {
        Ok(v1::GetRunResponse { run: Some(run) }) => me.do_send(Input::Run(run)),
        Ok(_) => {}
        Err(e) => tracing::debug!(run = %run_id, error = %e, "getting a feedback run failed"),
    }
}

/// Starts the router. Must run inside an actix `System`.
pub async fn start(
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: RouterOptions,
) -> Result<ServiceHandle, RouterError> {
    Ok(start_actor(bus, store, clock, opts).await?.0)
}

/// [`start`], with a handle that takes changed studios: `options_for` gives
/// the options of each new studio, of which the export folder and the
/// senders replace the running ones (tick, timeouts and retries stay as
/// started). Must run inside an actix `System`.
pub async fn start_live(
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: RouterOptions,
    options_for: impl Fn(&Studio) -> RouterOptions + Send + Sync + 'static,
) -> Result<ServiceHandle, RouterError> {
    let (handle, addr) = start_actor(bus, store, clock, opts).await?;
    Ok(handle.on_studio_change(move |studio: Arc<Studio>| {
        let o = options_for(&studio);
        addr.do_send(SetOptions {
            export_dir: o.export_dir,
            senders: o.senders,
        });
    }))
}

async fn start_actor(
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: RouterOptions,
) -> Result<(ServiceHandle, Addr<Router>), RouterError> {
    if opts.tick.is_zero() || opts.request_timeout.is_zero() || opts.retry.max_attempts == 0 {
        return Err(RouterError::Config(
            "tick, request_timeout and max_attempts must be more than 0".into(),
        ));
    }
    let mut items = Vec::new();
    for (k, v) in store.scan_prefix(ITEMS_TREE, b"")? {
        match serde_json::from_slice::<Item>(&v) {
            Ok(i) => items.push(i),
            Err(e) => {
                tracing::warn!(key = %String::from_utf8_lossy(&k), error = %e, "unreadable router item skipped")
            }
        }
    }
    // Items done stay in the store; only the newest are kept in memory.
    items.sort_by_key(|i| i.seen_ms);
    let (active, done): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|i| !i.state.done());
    let keep = done.len().saturating_sub(opts.keep_done);
    let items: Vec<Item> = active
        .into_iter()
        .chain(done.into_iter().skip(keep))
        .collect();
    tracing::info!(items = items.len(), "feedback router loaded its items");
    let events = bus.subscribe(subjects::RUN_EVENTS).await?;
    let replies = bus
        .queue_subscribe_proto::<v1::GetFeedbackRequest>(
            subjects::FEEDBACK_REPLY_GET,
            "feedback-router",
        )
        .await?;
    let engine = Engine::new(items, opts.retry, opts.keep_done);
    let (tick, timeout) = (opts.tick, opts.request_timeout);
    let addr = Router {
        engine,
        store: store.clone(),
        bus: bus.clone(),
        clock,
        opts,
    }
    .start();
    let (handle, control) = ServiceHandle::new("feedback-router");
    let mut tasks = Vec::new();
    {
        let (addr, bus, mut signal) = (addr.clone(), bus.clone(), control.signal.clone());
        let mut events = events;
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = signal.stopped() => break,
                    msg = events.next() => {
                        let Some(msg) = msg else { break };
                        let Ok(ev) = <v1::RunEvent as prost::Message>::decode(msg.payload.as_ref()) else { continue };
                        if ev.workflow != FEEDBACK_WORKFLOW {
                            continue;
                        }
                        tokio::spawn(fetch_run(bus.clone(), addr.clone(), ev.run_id, timeout));
                    }
                }
            }
        }));
    }
    {
        let (addr, bus, mut signal) = (addr.clone(), bus.clone(), control.signal.clone());
        let mut replies = replies;
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = signal.stopped() => break,
                    next = replies.next() => {
                        let Some((req, msg)) = next else { break };
                        let Some(reply) = msg.reply.clone() else { continue };
                        let out = match addr.send(GetReply(req.feedback_id.clone())).await {
                            Ok(Some(r)) => encode(&r),
                            Ok(None) => Outgoing::new(Vec::new()).header(
                                subjects::ERROR_HEADER,
                                format!("not_found: the feedback router has no feedback {:?} (its run has not been seen yet)", req.feedback_id),
                            ),
                            Err(e) => Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, format!("internal: {e}")),
                        };
                        if let Err(e) = bus.respond(&reply, out).await {
                            tracing::warn!(error = %e, "answering feedback.reply.get failed");
                        }
                    }
                }
            }
        }));
    }
    {
        let (addr, mut signal) = (addr.clone(), control.signal.clone());
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = signal.stopped() => break,
                    _ = interval.tick() => addr.do_send(Input::Tick),
                }
            }
        }));
    }
    let stopping = addr.clone();
    tokio::spawn(async move {
        let mut signal = control.signal.clone();
        signal.stopped().await;
        let mut result = Ok(());
        for t in tasks {
            if let Err(e) = t.await {
                result = Err(format!("feedback router task failed: {e}"));
            }
        }
        if let Err(e) = store.flush() {
            result = Err(format!("final flush: {e}"));
        }
        stopping.do_send(StopActor);
        tracing::info!("feedback router stopped");
        control.finished(result);
    });
    Ok((handle, addr))
}
