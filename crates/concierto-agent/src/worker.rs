//! The worker: one replica of one role. It shares the role's durable consumer
//! with every other replica, runs up to `max_in_flight` tasks at once, stores
//! each result before acknowledging its task, and reports heartbeats.
//!
//! A worker is an actix actor under a supervisor ([`actor`]); each task it
//! takes runs as a job in its own tokio task ([`job`]); its counters and the
//! restart backoff are plain state ([`state`]).

mod actor;
mod job;
mod state;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use concierto_bus::{Bus, BusError, BusExt, ConsumerSpec};
use concierto_core::config::Studio;
use concierto_core::roles::RoleDef;
use concierto_core::service::ServiceHandle;
use concierto_core::subjects;
use concierto_proto::v1::{AgentState, Task};

use crate::context::ContextOptions;
use crate::error::AgentError;
use crate::executor::Executor;

/// The stream tasks are stored in.
pub const TASKS_STREAM: &str = "TASKS";

/// How long a stopping worker waits for the bus to flush.
pub const STOP_FLUSH: Duration = Duration::from_secs(2);

/// How a worker runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOptions {
    /// This replica's id; results and heartbeats name the worker
    /// `<role>.<worker_id>`.
    pub worker_id: String,
    /// Tasks run at once (at least 1).
    pub max_in_flight: usize,
    /// How often a heartbeat is published.
    pub heartbeat_every: Duration,
    /// The consumer's `ack_wait`: an unacknowledged task goes to another replica
    /// after it. While a task runs, `in_progress` is sent every third of it.
    pub ack_wait: Duration,
    /// The consumer's `max_deliver`: deliveries before a task is dead-lettered.
    pub max_deliver: u64,
    /// How long one fetch waits for a task when the queue is empty (this also
    /// bounds how long a stop waits for the fetch under way).
    pub fetch_wait: Duration,
    /// Where a task's `context` is fetched from ([`crate::context`]): the
    /// brand folder and how long a request waits.
    pub context: ContextOptions,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            worker_id: default_worker_id(),
            max_in_flight: 4,
            heartbeat_every: Duration::from_secs(10),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            fetch_wait: Duration::from_millis(500),
            context: ContextOptions::default(),
        }
    }
}

impl WorkerOptions {
    /// The options a studio gives `role`: `ack_wait` and `max_deliver` from
    /// `server.bus`, `max_in_flight` from `agents.roles.<role>` (default 4).
    pub fn for_role(studio: &Studio, role: &str) -> Self {
        let max_in_flight = studio
            .agents
            .roles
            .get(role)
            .and_then(|s| s.max_in_flight)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(4);
        WorkerOptions {
            max_in_flight,
            ack_wait: studio.server.bus.ack_wait,
            max_deliver: studio.server.bus.max_deliver,
            context: ContextOptions::for_studio(studio),
            ..Default::default()
        }
    }
}

/// `$HOSTNAME-<pid>`, or `worker-<pid>` without a host name.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{}-{}", host.trim(), std::process::id())
}

/// The consumer spec every replica of `role` opens: durable = the role,
/// filter `task.<role>`.
pub fn consumer_spec(role: &str, opts: &WorkerOptions) -> ConsumerSpec {
    ConsumerSpec {
        durable: role.to_string(),
        filter: subjects::task(role),
        ack_wait: opts.ack_wait,
        max_deliver: opts.max_deliver,
        max_ack_pending: 0,
        // Never pull a task this worker cannot start at once.
        prefetch: 0,
        // A new role's queue takes the tasks already waiting for it.
        deliver_new: false,
    }
}

/// Starts a worker for `role`: opens the role's shared consumer on the `TASKS`
/// stream (which must exist: `concierto_bus::ensure_standard_streams`), then
/// fetches and runs tasks until [`ServiceHandle::stop`], which drains it: no
/// new task is taken, the ones running finish (their results are stored and
/// acknowledged), a `STOPPED` heartbeat goes out, and `stop` returns.
///
/// Dropping the handle stops the worker the same way.
///
/// The worker is an actix actor: `start_worker` must be called inside an actix
/// `System` (`actix::System::with_tokio_rt`, or `#[actix_rt::test]` in tests);
/// outside one it returns [`AgentError::NoSystem`]. Its jobs run on the tokio
/// runtime (on a multi-threaded one, in parallel).
pub async fn start_worker(
    role: RoleDef,
    executor: Arc<dyn Executor>,
    bus: Arc<dyn Bus>,
    opts: WorkerOptions,
) -> Result<ServiceHandle, AgentError> {
    let invalid = |why: &str| AgentError::InvalidOptions {
        role: role.name.clone(),
        why: why.to_string(),
    };
    if role.name.trim().is_empty() {
        return Err(invalid("the role has no name"));
    }
    if opts.max_in_flight == 0 {
        return Err(invalid("max_in_flight must be at least 1"));
    }
    if opts.worker_id.trim().is_empty() {
        return Err(invalid("worker_id is empty: give each replica an id"));
    }
    if opts.ack_wait < Duration::from_millis(30) {
        return Err(invalid("ack_wait must be at least 30 ms"));
    }
    if opts.heartbeat_every.is_zero() {
        return Err(invalid("heartbeat_every must be more than zero"));
    }
    let capacity = u32::try_from(opts.max_in_flight)
        .map_err(|_| invalid("max_in_flight is larger than a u32"))?;
    let arbiter = actix::Arbiter::try_current().ok_or(AgentError::NoSystem)?;

    let heartbeat_subject = subjects::heartbeat(&role.name, &opts.worker_id);
    let job = Arc::new(job::JobCtx {
        worker: format!("{}.{}", role.name, opts.worker_id),
        result_subject: subjects::result(&role.name),
        model: executor.model(&role),
        role: Arc::new(role),
        executor,
        bus,
        opts,
    });

    let mut stats = state::Stats::new(capacity, Instant::now());
    let starting = actor::heartbeat_of(&job, &mut stats, AgentState::Starting);
    if let Err(e) = job.bus.publish_proto(&heartbeat_subject, &starting).await {
        tracing::warn!(worker = %job.worker, error = %e, "could not publish a heartbeat");
    }
    let spec = consumer_spec(&job.role.name, &job.opts);
    let consumer = match job.bus.consumer(TASKS_STREAM, &spec).await {
        Ok(c) => c,
        Err(e @ BusError::NotFound(_)) => {
            return Err(AgentError::MissingStream {
                stream: TASKS_STREAM.to_string(),
                source: e,
            });
        }
        Err(e) => return Err(e.into()),
    };
    tracing::debug!(
        role = %job.role.name,
        worker = %job.worker,
        executor = %job.executor.name(),
        max_in_flight = capacity,
        "agent worker ready"
    );

    let (handle, control) = ServiceHandle::new(format!("agent {}", job.worker));
    actor::start(
        &arbiter,
        actor::Parts {
            job,
            consumer,
            stats,
            control,
            heartbeat_subject,
        },
    );
    Ok(handle)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where `task`'s result goes: the task's `result_subject` (a partitioned
/// studio's `result.<role>.<k>`) when it is one of this role's result subjects,
/// else the role's `result.<role>`.
fn result_subject<'a>(default: &'a str, task: &'a Task) -> &'a str {
    let own = task
        .result_subject
        .strip_prefix(default)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
    if own { &task.result_subject } else { default }
}

#[cfg(test)]
mod result_subject_tests {
    use super::*;

    #[test]
    fn only_the_roles_own_partition_subjects() {
        let mut t = Task::default();
        assert_eq!(result_subject("result.writer", &t), "result.writer");
        t.result_subject = "result.writer.3".into();
        assert_eq!(result_subject("result.writer", &t), "result.writer.3");
        for bad in [
            "result.other.3",
            "result.writer.>",
            "result.writer.",
            "task.writer.3",
            "result.writer.3.x",
        ] {
            t.result_subject = bad.into();
            assert_eq!(
                result_subject("result.writer", &t),
                "result.writer",
                "{bad}"
            );
        }
    }
}
