//! The process's Prometheus registry and the counters services move.
//!
//! | metric | labels | moved by |
//! |---|---|---|
//! | `concierto_build_info` | `version` | always 1 |
//! | `concierto_bus_messages_published_total` | `kind` | every send on the bus |
//! | `concierto_bus_messages_received_total` | `kind` | every message handed to a subscriber or consumer |
//! | `concierto_agent_tasks_total` | `role`, `outcome` | agent workers, per result stored |
//! | `concierto_agent_task_duration_seconds` | `role` | agent workers (executor time) |
//! | `concierto_runs_started_total` | `workflow` | the orchestrator |
//! | `concierto_runs_finished_total` | `workflow`, `state` | the orchestrator |
//! | `concierto_trigger_fires_total` | `trigger` | the scheduler (new fires, not duplicates) |
//! | `concierto_grpc_requests_total` | `method`, `code` | the admin API |
//! | `concierto_http_requests_total` | `service`, `route`, `status` | feedback intake, content library API |
//! | `concierto_spend_usd_total` | `role`, `workflow` | the orchestrator, per task result with a cost |
//! | `concierto_budget_day_spent_usd` | `scope` (`studio` or `role:<name>`) | the orchestrator: spend of the current UTC day |
//! | `concierto_budget_day_limit_usd` | `scope` | the orchestrator: the day limit of a scope that has one (`per_day_usd`), set with its spend |
//! | `concierto_deliverables_published_total` | `workflow`, `publisher`, `outcome` | the publisher (`library` or a publisher's name; `ok`, `failed`) |
//!
//! `concierto_ready` (1 while `/readyz` answers 200) is added by the metrics
//! server ([`crate::server`]). `kind` is `concierto_bus::observe::subject_kind`
//! (dead letters are `dlq`). Text from
//! [`add_text_source`] (the tracker's series) is appended as it is.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type L1 = [(&'static str, String); 1];
type L2 = [(&'static str, String); 2];
type L3 = [(&'static str, String); 3];

fn task_histogram() -> Histogram {
    // 10 ms .. ~5.5 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

struct Metrics {
    registry: Registry,
    published: Family<L1, Counter>,
    received: Family<L1, Counter>,
    tasks: Family<L2, Counter>,
    task_seconds: Family<L1, Histogram, fn() -> Histogram>,
    runs_started: Family<L1, Counter>,
    runs_finished: Family<L2, Counter>,
    fires: Family<L1, Counter>,
    grpc: Family<L2, Counter>,
    http: Family<L3, Counter>,
    spend: Family<L2, Counter<f64, AtomicU64>>,
    day_spent: Family<L1, Gauge<f64, AtomicU64>>,
    day_limit: Family<L1, Gauge<f64, AtomicU64>>,
    deliverables: Family<L3, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let build = Family::<L1, Gauge>::default();
        build
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        registry.register(
            "concierto_build_info",
            "Concierto's version (always 1)",
            build,
        );
        let m = Metrics {
            published: Family::default(),
            received: Family::default(),
            tasks: Family::default(),
            task_seconds: Family::new_with_constructor(task_histogram as fn() -> Histogram),
            runs_started: Family::default(),
            runs_finished: Family::default(),
            fires: Family::default(),
            grpc: Family::default(),
            http: Family::default(),
            spend: Family::default(),
            day_spent: Family::default(),
            day_limit: Family::default(),
            deliverables: Family::default(),
            registry,
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "concierto_bus_messages_published",
            "Messages sent on the bus, by subject kind",
            m.published.clone(),
        );
        r.register(
            "concierto_bus_messages_received",
            "Messages handed to subscribers and consumers, by subject kind",
            m.received.clone(),
        );
        r.register(
            "concierto_agent_tasks",
            "Tasks an agent worker finished, by role and outcome",
            m.tasks.clone(),
        );
        r.register(
            "concierto_agent_task_duration_seconds",
            "Time the executor took per task, by role",
            m.task_seconds.clone(),
        );
        r.register(
            "concierto_runs_started",
            "Runs the orchestrator started, by workflow",
            m.runs_started.clone(),
        );
        r.register(
            "concierto_runs_finished",
            "Runs that ended, by workflow and final state",
            m.runs_finished.clone(),
        );
        r.register(
            "concierto_trigger_fires",
            "Runs the scheduler started, by trigger",
            m.fires.clone(),
        );
        r.register(
            "concierto_grpc_requests",
            "Admin API calls, by method and gRPC code",
            m.grpc.clone(),
        );
        r.register(
            "concierto_http_requests",
            "HTTP requests, by service, route and status",
            m.http.clone(),
        );
        r.register(
            "concierto_spend_usd",
            "What model calls cost in US dollars, by role and workflow",
            m.spend.clone(),
        );
        r.register(
            "concierto_budget_day_spent_usd",
            "Spend of the current UTC day in US dollars, for the studio and per role",
            m.day_spent.clone(),
        );
        r.register(
            "concierto_budget_day_limit_usd",
            "Day budget limit in US dollars, for the studio and per role, where one is set",
            m.day_limit.clone(),
        );
        r.register(
            "concierto_deliverables_published",
            "Deliverables the publisher settled, by workflow, publisher and outcome (ok, failed)",
            m.deliverables.clone(),
        );
        m
    }
}

/// A function rendering Prometheus text appended to `/metrics`.
pub type TextSource = Arc<dyn Fn() -> String + Send + Sync>;

static METRICS: OnceLock<Metrics> = OnceLock::new();
static SOURCES: Mutex<Vec<TextSource>> = Mutex::new(Vec::new());

fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// Appends the text `f` renders (Prometheus text format, with its own `# HELP`
/// and `# TYPE` lines) to every `/metrics` answer of this process.
pub fn add_text_source(f: TextSource) {
    match SOURCES.lock() {
        Ok(mut s) => s.push(f),
        Err(poisoned) => poisoned.into_inner().push(f),
    }
}

/// Everything as Prometheus text (format 0.0.4): the registry, then every
/// text source.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &metrics().registry).is_err() {
        out.clear();
    }
    // The encoder writes OpenMetrics; its end marker would hide what follows.
    if let Some(body) = out.strip_suffix("# EOF\n") {
        out.truncate(body.len());
    }
    out.push_str(&format!(
        "# HELP concierto_store_errors_total Store operations that failed (a full or read-only disk).\n\
         # TYPE concierto_store_errors_total counter\n\
         concierto_store_errors_total {}\n",
        concierto_core::health::store_errors_total()
    ));
    let sources: Vec<TextSource> = match SOURCES.lock() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for source in sources {
        let text = source();
        out.push_str(&text);
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

pub(crate) fn message_published(kind: &str) {
    metrics()
        .published
        .get_or_create(&[("kind", kind.to_string())])
        .inc();
}

pub(crate) fn message_received(kind: &str) {
    metrics()
        .received
        .get_or_create(&[("kind", kind.to_string())])
        .inc();
}

/// An agent worker finished a task of `role` with `outcome` (`succeeded`,
/// `retryable`, `failed`) after the executor took `took`.
pub fn task_handled(role: &str, outcome: &str, took: Duration) {
    let m = metrics();
    m.tasks
        .get_or_create(&[("role", role.to_string()), ("outcome", outcome.to_string())])
        .inc();
    m.task_seconds
        .get_or_create(&[("role", role.to_string())])
        .observe(took.as_secs_f64());
}

/// A task of `role` in a run of `workflow` cost `usd`.
pub fn spent(role: &str, workflow: &str, usd: f64) {
    if !usd.is_finite() || usd <= 0.0 {
        return;
    }
    metrics()
        .spend
        .get_or_create(&[
            ("role", role.to_string()),
            ("workflow", workflow.to_string()),
        ])
        .inc_by(usd);
}

/// The current UTC day's spend of `scope` (`studio`, `role:<name>`) is `usd`.
pub fn day_spent(scope: &str, usd: f64) {
    metrics()
        .day_spent
        .get_or_create(&[("scope", scope.to_string())])
        .set(usd);
}

/// The day limit of `scope` (`studio`, `role:<name>`) is `usd`.
pub fn day_limit(scope: &str, usd: f64) {
    if !usd.is_finite() {
        return;
    }
    metrics()
        .day_limit
        .get_or_create(&[("scope", scope.to_string())])
        .set(usd);
}

/// The publisher settled a deliverable of `workflow` at `publisher` (`library`
/// or a publisher's name) with `outcome` (`ok`, `failed`).
pub fn deliverable_published(workflow: &str, publisher: &str, outcome: &str) {
    metrics()
        .deliverables
        .get_or_create(&[
            ("workflow", workflow.to_string()),
            ("publisher", publisher.to_string()),
            ("outcome", outcome.to_string()),
        ])
        .inc();
}

/// The orchestrator started a run of `workflow`.
pub fn run_started(workflow: &str) {
    metrics()
        .runs_started
        .get_or_create(&[("workflow", workflow.to_string())])
        .inc();
}

/// A run of `workflow` ended in `state` (`succeeded`, `failed`, `cancelled`).
pub fn run_finished(workflow: &str, state: &str) {
    metrics()
        .runs_finished
        .get_or_create(&[
            ("workflow", workflow.to_string()),
            ("state", state.to_string()),
        ])
        .inc();
}

/// The scheduler started a run for `trigger` (not counted for a duplicate).
pub fn trigger_fired(trigger: &str) {
    metrics()
        .fires
        .get_or_create(&[("trigger", trigger.to_string())])
        .inc();
}

/// The admin API answered `method` with gRPC `code` (`OK`, `NOT_FOUND`, ...).
pub fn grpc_request(method: &str, code: &str) {
    metrics()
        .grpc
        .get_or_create(&[("method", method.to_string()), ("code", code.to_string())])
        .inc();
}

/// `service` answered a request on `route` (the matched route pattern, not the
/// path) with `status`.
pub fn http_request(service: &str, route: &str, status: u16) {
    metrics()
        .http
        .get_or_create(&[
            ("service", service.to_string()),
            ("route", route.to_string()),
            ("status", status.to_string()),
        ])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `line_start` (name and labels) in `text`.
    fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn counters_render_as_prometheus_text() {
        run_started("daily");
        run_started("daily");
        run_finished("daily", "succeeded");
        task_handled("writer", "succeeded", Duration::from_millis(30));
        trigger_fired("t1");
        day_spent("studio", 20.0);
        day_limit("studio", 25.0);
        grpc_request("StartRun", "OK");
        http_request("feedback", "/feedback", 200);
        message_published("task");
        add_text_source(Arc::new(|| {
            "# TYPE concierto_tracker_series gauge\nconcierto_tracker_series 7".to_string()
        }));
        let text = render();
        assert_eq!(
            sample(&text, "concierto_runs_started_total{workflow=\"daily\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "concierto_runs_finished_total{workflow=\"daily\",state=\"succeeded\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "concierto_agent_tasks_total{role=\"writer\",outcome=\"succeeded\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "concierto_agent_task_duration_seconds_count{role=\"writer\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "concierto_trigger_fires_total{trigger=\"t1\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "concierto_grpc_requests_total{method=\"StartRun\",code=\"OK\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "concierto_http_requests_total{service=\"feedback\",route=\"/feedback\",status=\"200\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "concierto_bus_messages_published_total{kind=\"task\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "concierto_budget_day_limit_usd{scope=\"studio\"}"),
            Some(25.0)
        );
        assert_eq!(
            sample(&text, "concierto_budget_day_spent_usd{scope=\"studio\"}"),
            Some(20.0)
        );
        assert!(text.contains(&format!(
            "concierto_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(
            !text.contains("# EOF"),
            "the OpenMetrics end marker is dropped"
        );
        assert!(text.ends_with("concierto_tracker_series 7\n"), "{text}");
    }
}
