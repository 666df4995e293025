//! `AdminService`: every call authenticated, then answered by the service that
//! owns the data, over bus requests (runs and gates: the orchestrator;
//! triggers: the scheduler; feedback, submitted feedback included: the
//! feedback service; replies: the feedback router) or a durable publish
//! (start a run).

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use concierto_bus::{Bus, BusError, BusExt, ProtoMessage, decode, encode};
use concierto_core::config::Studio;
use concierto_core::service::{StopSignal, StudioHook};
use concierto_core::subjects;
use concierto_proto::v1::{self, admin_service_server::AdminService};
use futures::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::auth::{Identities, Identity};

/// Roles that may record metric values (`RecordMetric`, the tracker's
/// `POST /api/metrics`): a value can cross a threshold and start runs, so a
/// plain reviewer may not.
pub const RECORD_METRIC_ROLES: [&str; 2] = ["admin", "metrics"];

/// Why `who` may not record metric values, naming the roles it needs.
pub fn record_metric_denied(who: &str) -> String {
    format!(
        "{who} may not record metrics: it needs the admin or metrics role \
         (reviewers.{who}.roles: [metrics])"
    )
}

/// A server stream of `T`.
pub type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The studio a call reads, with the token identities it gives.
struct Current {
    studio: Arc<Studio>,
    identities: Identities,
}

impl Current {
    fn of(studio: Arc<Studio>) -> Arc<Current> {
        let identities = Identities::from_studio(&studio);
        Arc::new(Current { studio, identities })
    }
}

/// The service.
pub struct Admin {
    current: Arc<RwLock<Arc<Current>>>,
    bus: Arc<dyn Bus>,
    timeout: Duration,
    stop: StopSignal,
}

impl Admin {
    /// Over `bus`, with the studio's identities; `timeout` bounds each bus
    /// request; watch streams end when `stop` fires (so a shutdown does not
    /// wait for watching clients).
    pub fn new(
        studio: Arc<Studio>,
        bus: Arc<dyn Bus>,
        timeout: Duration,
        stop: StopSignal,
    ) -> Self {
        Admin {
            current: Arc::new(RwLock::new(Current::of(studio))),
            bus,
            timeout,
            stop,
        }
    }

    /// What takes a changed studio: the next call authenticates against its
    /// reviewers' tokens and reads its workflows.
    pub fn studio_hook(&self) -> StudioHook {
        let current = self.current.clone();
        Arc::new(move |studio: Arc<Studio>| {
            let next = Current::of(studio);
            tracing::info!(
                identities = next.identities.len(),
                workflows = next.studio.workflows.len(),
                "admin service took the changed studio"
            );
            match current.write() {
                Ok(mut g) => *g = next,
                Err(p) => *p.into_inner() = next,
            }
        })
    }

    fn current(&self) -> Arc<Current> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn who<T>(&self, req: &Request<T>) -> Result<Identity, Status> {
        self.current().identities.authenticate(req)
    }

    /// Asks the scheduler to pause (`paused`) or resume a trigger for `who`.
    async fn set_paused(
        &self,
        who: &Identity,
        name: String,
        paused: bool,
    ) -> Result<v1::PauseTriggerResponse, Status> {
        if name.is_empty() {
            return Err(Status::invalid_argument("name is required"));
        }
        let req = v1::PauseTriggerRequest {
            name,
            paused,
            requested_by: who.id.clone(),
        };
        let r: v1::PauseTriggerResponse = self
            .ask("scheduler", subjects::SCHEDULER_PAUSE, &req, Some(who))
            .await?;
        tracing::info!(trigger = %req.name, paused, by = %who.id, "trigger paused state set over the admin API");
        Ok(r)
    }

    /// A bus request to the service `owner` answers; its error header becomes a status.
    async fn ask<Q: ProtoMessage, R: ProtoMessage>(
        &self,
        owner: &str,
        subject: &str,
        req: &Q,
        identity: Option<&Identity>,
    ) -> Result<R, Status> {
        ask_service(
            self.bus.as_ref(),
            owner,
            subject,
            req,
            identity.map(|i| i.id.as_str()),
            self.timeout,
        )
        .await
    }
}

/// A bus request to the service `owner` (`"orchestrator"`, `"scheduler"`, ...)
/// that answers on `subject`, with the caller's id in
/// [`subjects::IDENTITY_HEADER`] when given. Nobody answering, a timeout and
/// the reply's [`subjects::ERROR_HEADER`] become a [`Status`] that names the
/// owner (see [`bus_status`] and [`remote_status`]). Used by the admin API and
/// the dashboard alike, so both apply the owning service's rules the same way.
pub async fn ask_service<Q: ProtoMessage, R: ProtoMessage>(
    bus: &dyn Bus,
    owner: &str,
    subject: &str,
    req: &Q,
    identity: Option<&str>,
    timeout: Duration,
) -> Result<R, Status> {
    let mut out = encode(req);
    if let Some(id) = identity {
        out = out.header(subjects::IDENTITY_HEADER, id.to_string());
    }
    let reply = bus
        .request(subject, out, timeout)
        .await
        .map_err(|e| bus_status(owner, e))?;
    if let Some(err) = reply.headers.get(subjects::ERROR_HEADER) {
        return Err(remote_status(err));
    }
    decode(&reply).map_err(|e| Status::internal(format!("{owner} answered badly: {e}")))
}

/// A failed bus request to `owner` as a status: nobody answering is
/// `UNAVAILABLE` ("the {owner} is not running"), a timeout `DEADLINE_EXCEEDED`.
pub fn bus_status(owner: &str, e: BusError) -> Status {
    match e {
        BusError::NoResponders(_) => Status::unavailable(format!(
            "the {owner} is not running (nobody answers on the bus)"
        )),
        BusError::Timeout { .. } => {
            Status::deadline_exceeded(format!("the {owner} did not answer in time"))
        }
        other => Status::unavailable(format!("bus: {other}")),
    }
}

/// `<code>: <message>` from a service's error header, as a status.
pub fn remote_status(header: &str) -> Status {
    let (code, msg) = header.split_once(": ").unwrap_or(("internal", header));
    let msg = msg.to_string();
    match code {
        "not_found" => Status::not_found(msg),
        "invalid_argument" => Status::invalid_argument(msg),
        "failed_precondition" => Status::failed_precondition(msg),
        "permission_denied" => Status::permission_denied(msg),
        "unauthenticated" => Status::unauthenticated(msg),
        "already_exists" => Status::already_exists(msg),
        "unavailable" => Status::unavailable(msg),
        "deadline_exceeded" => Status::deadline_exceeded(msg),
        _ => Status::internal(msg),
    }
}

fn random_suffix() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn list_runs(
        &self,
        request: Request<v1::ListRunsRequest>,
    ) -> Result<Response<v1::ListRunsResponse>, Status> {
        self.who(&request)?;
        let r = self
            .ask(
                "orchestrator",
                subjects::ORCHESTRATOR_LIST_RUNS,
                request.get_ref(),
                None,
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn get_run(
        &self,
        request: Request<v1::GetRunRequest>,
    ) -> Result<Response<v1::GetRunResponse>, Status> {
        self.who(&request)?;
        if request.get_ref().run_id.is_empty() {
            return Err(Status::invalid_argument("run_id is required"));
        }
        let r = self
            .ask(
                "orchestrator",
                subjects::ORCHESTRATOR_GET_RUN,
                request.get_ref(),
                None,
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn start_run(
        &self,
        request: Request<v1::StartRunRequest>,
    ) -> Result<Response<v1::StartRunResponse>, Status> {
        let who = self.who(&request)?;
        who.require_admin("start runs")?;
        let studio = self.current().studio.clone();
        let start = crate::start::start_run_message(
            &studio,
            request.into_inner(),
            format!("admin:{}", who.id),
            chrono::Utc::now(),
        )?;
        let run_id = start.run_id.clone();
        // The root span of the run's trace: `run.start` carries its context.
        let span = tracing::info_span!(
            "admin.start_run",
            service = "admin",
            run_id = %run_id,
            workflow = %start.workflow,
        );
        self.bus
            .publish_durable_proto(
                &subjects::run_start_for(&run_id, studio.server.partitions),
                &start,
                &run_id,
            )
            .instrument(span)
            .await
            .map_err(|e| Status::unavailable(format!("could not store the run start: {e}")))?;
        tracing::info!(run = %run_id, by = %who.id, "run started over the admin API");
        Ok(Response::new(v1::StartRunResponse { run_id }))
    }

    async fn cancel_run(
        &self,
        request: Request<v1::CancelRunRequest>,
    ) -> Result<Response<v1::CancelRunResponse>, Status> {
        let who = self.who(&request)?;
        who.require_admin("cancel runs")?;
        let mut r = request.into_inner();
        if r.run_id.is_empty() {
            return Err(Status::invalid_argument("run_id is required"));
        }
        r.reason = if r.reason.is_empty() {
            format!("by {}", who.id)
        } else {
            format!("{} (by {})", r.reason, who.id)
        };
        let r = self
            .ask("orchestrator", subjects::ORCHESTRATOR_CANCEL_RUN, &r, None)
            .await?;
        Ok(Response::new(r))
    }

    type WatchRunsStream = Streamed<v1::WatchRunsResponse>;

    async fn watch_runs(
        &self,
        request: Request<v1::WatchRunsRequest>,
    ) -> Result<Response<Self::WatchRunsStream>, Status> {
        self.who(&request)?;
        let r = request.into_inner();
        let subject = if r.run_id.is_empty() {
            subjects::RUN_EVENTS.to_string()
        } else {
            subjects::run_event(&r.run_id)
        };
        let mut sub = self
            .bus
            .subscribe_proto::<v1::RunEvent>(&subject)
            .await
            .map_err(|e| Status::unavailable(format!("bus: {e}")))?;
        let mut stop = self.stop.clone();
        let stream = async_stream(move |tx| async move {
            loop {
                let (event, _) = tokio::select! {
                    _ = stop.stopped() => break,
                    _ = tx.closed() => break,
                    next = sub.next() => match next {
                        Some(x) => x,
                        None => break,
                    },
                };
                if tx
                    .send(Ok(v1::WatchRunsResponse { event: Some(event) }))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn list_gates(
        &self,
        request: Request<v1::ListGatesRequest>,
    ) -> Result<Response<v1::ListGatesResponse>, Status> {
        self.who(&request)?;
        let r = self
            .ask(
                "orchestrator",
                subjects::ORCHESTRATOR_LIST_GATES,
                request.get_ref(),
                None,
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn get_gate(
        &self,
        request: Request<v1::GetGateRequest>,
    ) -> Result<Response<v1::GetGateResponse>, Status> {
        self.who(&request)?;
        if request.get_ref().gate_id.is_empty() {
            return Err(Status::invalid_argument("gate_id is required"));
        }
        let r = self
            .ask(
                "orchestrator",
                subjects::ORCHESTRATOR_GET_GATE,
                request.get_ref(),
                None,
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn decide_gate(
        &self,
        request: Request<v1::DecideGateRequest>,
    ) -> Result<Response<v1::DecideGateResponse>, Status> {
        let who = self.who(&request)?;
        let r = request.into_inner();
        if r.gate_id.is_empty() {
            return Err(Status::invalid_argument("gate_id is required"));
        }
        let r: v1::DecideGateResponse = self
            .ask(
                "orchestrator",
                subjects::ORCHESTRATOR_DECIDE_GATE,
                &r,
                Some(&who),
            )
            .await?;
        Ok(Response::new(r))
    }

    type WatchGatesStream = Streamed<v1::WatchGatesResponse>;

    async fn watch_gates(
        &self,
        request: Request<v1::WatchGatesRequest>,
    ) -> Result<Response<Self::WatchGatesStream>, Status> {
        let who = self.who(&request)?;
        let mine = request.get_ref().mine;
        let mut sub = self
            .bus
            .subscribe_proto::<v1::Gate>(subjects::GATE_EVENTS)
            .await
            .map_err(|e| Status::unavailable(format!("bus: {e}")))?;
        let mut stop = self.stop.clone();
        let stream = async_stream(move |tx| async move {
            loop {
                let (gate, _) = tokio::select! {
                    _ = stop.stopped() => break,
                    _ = tx.closed() => break,
                    next = sub.next() => match next {
                        Some(x) => x,
                        None => break,
                    },
                };
                let for_me = gate
                    .request
                    .as_ref()
                    .is_some_and(|r| r.reviewers.contains(&who.id));
                if mine && !for_me {
                    continue;
                }
                if tx
                    .send(Ok(v1::WatchGatesResponse { gate: Some(gate) }))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn submit_feedback(
        &self,
        request: Request<v1::SubmitFeedbackRequest>,
    ) -> Result<Response<v1::SubmitFeedbackResponse>, Status> {
        let who = self.who(&request)?;
        let r = request.into_inner();
        if r.text.trim().is_empty() {
            return Err(Status::invalid_argument("text is required"));
        }
        let feedback_id = format!("api-{}", random_suffix());
        let fb = v1::Feedback {
            feedback_id,
            channel: v1::FeedbackChannel::Api as i32,
            author: who.id.clone(),
            subject: r.subject,
            text: r.text,
            attachments: Vec::new(),
            run_id: r.run_id,
            received_at: Some(concierto_proto::time::now()),
            metadata: [("identity".to_string(), who.id.clone())].into(),
        };
        // Stored and listed by the feedback service like any channel's.
        let r: v1::SubmitFeedbackResponse = self
            .ask(
                "feedback service",
                subjects::FEEDBACK_SUBMIT,
                &fb,
                Some(&who),
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn get_feedback(
        &self,
        request: Request<v1::GetFeedbackRequest>,
    ) -> Result<Response<v1::GetFeedbackResponse>, Status> {
        let who = self.who(&request)?;
        let r = request.into_inner();
        if r.feedback_id.is_empty() {
            return Err(Status::invalid_argument("feedback_id is required"));
        }
        let mut out: v1::GetFeedbackResponse = self
            .ask("feedback service", subjects::FEEDBACK_GET, &r, Some(&who))
            .await?;
        // The reply, from the feedback router; without it the record alone.
        match self
            .ask::<_, v1::FeedbackReply>(
                "feedback router",
                subjects::FEEDBACK_REPLY_GET,
                &r,
                Some(&who),
            )
            .await
        {
            Ok(reply) => out.reply = Some(reply),
            Err(e) => {
                tracing::warn!(feedback = %r.feedback_id, error = %e, "no reply from the feedback router")
            }
        }
        Ok(Response::new(out))
    }

    async fn reload_studio(
        &self,
        request: Request<v1::ReloadStudioRequest>,
    ) -> Result<Response<v1::ReloadStudioResponse>, Status> {
        let who = self.who(&request)?;
        who.require_admin("reload the studio")?;
        let req = v1::ReloadStudioRequest {
            requested_by: who.id.clone(),
        };
        // Any process of the studio answers (queue group `studio-reload`): it
        // rereads the file, validates it and announces a new version to all.
        let r: v1::ReloadStudioResponse = self
            .ask("studio reloader", subjects::STUDIO_RELOAD, &req, Some(&who))
            .await?;
        Ok(Response::new(r))
    }

    async fn list_feedback(
        &self,
        request: Request<v1::ListFeedbackRequest>,
    ) -> Result<Response<v1::ListFeedbackResponse>, Status> {
        self.who(&request)?;
        let r = self
            .ask(
                "feedback service",
                subjects::FEEDBACK_LIST,
                request.get_ref(),
                None,
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn list_triggers(
        &self,
        request: Request<v1::ListTriggersRequest>,
    ) -> Result<Response<v1::ListTriggersResponse>, Status> {
        self.who(&request)?;
        let r = self
            .ask(
                "scheduler",
                subjects::SCHEDULER_TRIGGERS,
                request.get_ref(),
                None,
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn fire_trigger(
        &self,
        request: Request<v1::FireTriggerRequest>,
    ) -> Result<Response<v1::FireTriggerResponse>, Status> {
        let who = self.who(&request)?;
        who.require_admin("fire triggers")?;
        if request.get_ref().name.is_empty() {
            return Err(Status::invalid_argument("name is required"));
        }
        let r = self
            .ask(
                "scheduler",
                subjects::SCHEDULER_FIRE,
                request.get_ref(),
                Some(&who),
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn retry_run(
        &self,
        request: Request<v1::RetryRunRequest>,
    ) -> Result<Response<v1::RetryRunResponse>, Status> {
        let who = self.who(&request)?;
        who.require_admin("retry runs")?;
        if request.get_ref().run_id.is_empty() {
            return Err(Status::invalid_argument("run_id is required"));
        }
        let r: v1::RetryRunResponse = self
            .ask(
                "orchestrator",
                subjects::ORCHESTRATOR_RETRY_RUN,
                request.get_ref(),
                Some(&who),
            )
            .await?;
        tracing::info!(run = %request.get_ref().run_id, retry = %r.run_id, by = %who.id, "run retried over the admin API");
        Ok(Response::new(r))
    }

    async fn pause_trigger(
        &self,
        request: Request<v1::PauseTriggerRequest>,
    ) -> Result<Response<v1::PauseTriggerResponse>, Status> {
        let who = self.who(&request)?;
        who.require_admin("pause triggers")?;
        let name = request.into_inner().name;
        let r = self.set_paused(&who, name, true).await?;
        Ok(Response::new(r))
    }

    async fn resume_trigger(
        &self,
        request: Request<v1::ResumeTriggerRequest>,
    ) -> Result<Response<v1::ResumeTriggerResponse>, Status> {
        let who = self.who(&request)?;
        who.require_admin("resume triggers")?;
        let name = request.into_inner().name;
        let r = self.set_paused(&who, name, false).await?;
        Ok(Response::new(v1::ResumeTriggerResponse {
            trigger: r.trigger,
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<v1::GetMetricsRequest>,
    ) -> Result<Response<v1::GetMetricsResponse>, Status> {
        self.who(&request)?;
        let r = self
            .ask(
                "tracker",
                subjects::TRACKER_GET_METRICS,
                request.get_ref(),
                None,
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn record_metric(
        &self,
        request: Request<v1::RecordMetricRequest>,
    ) -> Result<Response<v1::RecordMetricResponse>, Status> {
        let who = self.who(&request)?;
        if !who.has_any_role(&RECORD_METRIC_ROLES) {
            return Err(Status::permission_denied(record_metric_denied(&who.id)));
        }
        let r = request.get_ref();
        if r.metric.is_empty() {
            return Err(Status::invalid_argument("metric is required"));
        }
        if !r.value.is_finite() {
            return Err(Status::invalid_argument("value must be a finite number"));
        }
        let r = self
            .ask(
                "tracker",
                subjects::TRACKER_RECORD_METRIC,
                request.get_ref(),
                Some(&who),
            )
            .await?;
        Ok(Response::new(r))
    }

    async fn search_content(
        &self,
        request: Request<v1::SearchContentRequest>,
    ) -> Result<Response<v1::SearchContentResponse>, Status> {
        self.who(&request)?;
        let r = self
            .ask("ingest", subjects::LIBRARY_SEARCH, request.get_ref(), None)
            .await?;
        Ok(Response::new(r))
    }

    async fn list_dead_letters(
        &self,
        request: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        self.who(&request)?;
        let r = crate::dead_letters::list(self.bus.as_ref(), request.get_ref()).await?;
        Ok(Response::new(r))
    }

    async fn replay_dead_letter(
        &self,
        request: Request<v1::ReplayDeadLetterRequest>,
    ) -> Result<Response<v1::ReplayDeadLetterResponse>, Status> {
        let who = self.who(&request)?;
        who.require_admin("replay dead letters")?;
        let seq = request.get_ref().sequence;
        let r = crate::dead_letters::replay(self.bus.as_ref(), seq).await?;
        tracing::info!(seq, subject = %r.subject, by = %who.id, "dead letter replayed over the admin API");
        Ok(Response::new(r))
    }
}

/// A stream fed by a task that gets the sending half of a channel; the task
/// stops when the client goes away.
fn async_stream<T, F, Fut>(f: F) -> Streamed<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// The most params a run may be started with.
pub const MAX_RUN_PARAMS: usize = 64;
/// The longest param name, in bytes.
pub const MAX_PARAM_KEY_BYTES: usize = 128;
/// The longest param value, in bytes.
pub const MAX_PARAM_VALUE_BYTES: usize = 4096;

/// Refuses params past [`MAX_RUN_PARAMS`], [`MAX_PARAM_KEY_BYTES`] or
/// [`MAX_PARAM_VALUE_BYTES`] (`INVALID_ARGUMENT`, naming the one at fault).
pub(crate) fn check_params(
    params: &std::collections::HashMap<String, String>,
) -> Result<(), Status> {
    if params.len() > MAX_RUN_PARAMS {
        return Err(Status::invalid_argument(format!(
            "{} params; a run takes at most {MAX_RUN_PARAMS}",
            params.len()
        )));
    }
    for (k, v) in params {
        if k.trim().is_empty() || k.len() > MAX_PARAM_KEY_BYTES {
            return Err(Status::invalid_argument(format!(
                "param name {:?} must be 1 to {MAX_PARAM_KEY_BYTES} bytes",
                k.chars().take(40).collect::<String>()
            )));
        }
        if v.len() > MAX_PARAM_VALUE_BYTES {
            return Err(Status::invalid_argument(format!(
                "param {k:?} has {} bytes; a value may have at most {MAX_PARAM_VALUE_BYTES}",
                v.len()
            )));
        }
    }
    Ok(())
}
