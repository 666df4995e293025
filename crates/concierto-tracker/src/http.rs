//! HTTP: `POST /api/metrics` records an observation (the bearer token of a
//! reviewer with the `admin` or `metrics` role, checked by
//! [`concierto_admin::Identities`] as the admin API does), and the Prometheus text of a [`TrackerView`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};
use concierto_admin::Identities;
use concierto_bus::Bus;
use concierto_core::subjects;
use concierto_proto::v1;
use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tonic::Code;

use crate::service::TrackerView;
use crate::spec;

/// Roles that may record a metric (the admin API's `RecordMetric` rule too):
/// `admin` or `metrics`, never a plain reviewer (a value can cross a threshold
/// and start runs).
pub const RECORD_ROLES: [&str; 2] = concierto_admin::RECORD_METRIC_ROLES;

/// Body of `POST /api/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordBody {
    /// The metric, `[a-z0-9_]+`.
    pub metric: String,
    /// The observation, finite.
    pub value: f64,
    /// Free labels.
    #[serde(default)]
    pub labels: HashMap<String, String>,
}

#[derive(Clone)]
struct ApiState {
    bus: Arc<dyn Bus>,
    identities: Arc<Identities>,
    timeout: Duration,
}

/// `POST /api/metrics`, ready to merge into another server (the dashboard's).
/// The observation goes to the tracker as a `tracker.metrics.record` request,
/// so the tracker may run in another process. Answers: 200 `{"recorded":
/// true}`; 401 without a known token; 403 for a token without the admin or
/// metrics role; 400 for a bad name, value or body; 503 when the tracker does not
/// answer.
pub fn router(bus: Arc<dyn Bus>, identities: Identities) -> Router {
    let state = ApiState {
        bus,
        identities: Arc::new(identities),
        timeout: Duration::from_secs(5),
    };
    Router::new()
        .route("/api/metrics", routing::post(record))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn record(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<RecordBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let auth = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "the Authorization header is not text",
            );
        }
    };
    let who = match st.identities.from_authorization(auth) {
        Ok(w) => w,
        Err(e) => return problem(StatusCode::UNAUTHORIZED, e),
    };
    if !who.has_any_role(&RECORD_ROLES) {
        return problem(
            StatusCode::FORBIDDEN,
            concierto_admin::record_metric_denied(&who.id),
        );
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if !spec::valid_name(&body.metric) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("metric {:?} must be [a-z0-9_]+", body.metric),
        );
    }
    let req = v1::RecordMetricRequest {
        metric: body.metric,
        value: body.value,
        labels: body.labels,
    };
    let asked: Result<v1::RecordMetricResponse, tonic::Status> = concierto_admin::ask_service(
        st.bus.as_ref(),
        "tracker",
        subjects::TRACKER_RECORD_METRIC,
        &req,
        Some(&who.id),
        st.timeout,
    )
    .await;
    match asked {
        Ok(_) => (StatusCode::OK, Json(json!({ "recorded": true }))).into_response(),
        Err(s) => problem(http_status(s.code()), s.message()),
    }
}

/// A gRPC code (what the admin helpers answer with) as an HTTP status.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

type Gauges = Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>;

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauges {
    let g = Gauges::default();
    registry.register(name, help, g.clone());
    g
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn duration_s(d: &Option<prost_types::Duration>) -> f64 {
    d.as_ref()
        .map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
        .unwrap_or(0.0)
}

impl TrackerView {
    /// Every series' current value, target and whether it is on target, and
    /// the health numbers, as Prometheus text-format gauges (no `# EOF`, so the
    /// text can be appended to a process's own metrics):
    /// `concierto_metric{name="daily_output",group="content_generation"} 7.0`,
    /// `concierto_metric_target{...}`, `concierto_metric_on_target{...}`,
    /// `concierto_queue_depth{priority}`, `concierto_queue_oldest_seconds{priority}`,
    /// `concierto_role_replicas{role}`, `concierto_role_in_flight{role}`,
    /// `concierto_role_utilization{role}`, `concierto_dead_letters`,
    /// `concierto_gates_open`, `concierto_gates_overdue`. A metric with no value
    /// yet has no `concierto_metric` line; an improvement goal's value and
    /// target are in percent.
    pub fn prometheus_text(&self) -> String {
        let snap = self.read();
        let mut r = Registry::default();
        let current = gauge(
            &mut r,
            "concierto_metric",
            "Current value of a tracked metric (improvement goals: percent against the previous window)",
        );
        let target = gauge(
            &mut r,
            "concierto_metric_target",
            "Target of a progress metric (improvement goals: percent per window)",
        );
        let on_target = gauge(
            &mut r,
            "concierto_metric_on_target",
            "1 when the progress metric meets its target, else 0",
        );
        let depth = gauge(
            &mut r,
            "concierto_queue_depth",
            "Steps waiting in the orchestrator's queue per priority class",
        );
        let oldest = gauge(
            &mut r,
            "concierto_queue_oldest_seconds",
            "Age of the oldest queued step per priority class",
        );
        let replicas = gauge(
            &mut r,
            "concierto_role_replicas",
            "Workers of a role with a fresh heartbeat",
        );
        let in_flight = gauge(
            &mut r,
            "concierto_role_in_flight",
            "Tasks being worked on per role",
        );
        let util = gauge(
            &mut r,
            "concierto_role_utilization",
            "Busy share of a role's workers over the last heartbeats",
        );
        let dead = gauge(
            &mut r,
            "concierto_dead_letters",
            "Messages dead-lettered since the tracker started",
        );
        let open = gauge(
            &mut r,
            "concierto_gates_open",
            "Quality gates waiting for a decision",
        );
        let overdue = gauge(
            &mut r,
            "concierto_gates_overdue",
            "Open quality gates past their SLA",
        );
        for m in &snap.metrics {
            let l = labels(&[("name", &m.spec.name), ("group", &m.spec.group)]);
            if let Some(v) = m.current {
                current.get_or_create(&l).set(v);
            }
            let t = match m.spec.goal {
                Some(concierto_core::config::Goal::Target(t)) => Some(t.value.as_f64()),
                Some(concierto_core::config::Goal::Improvement(i)) => Some(i.percent),
                None => None,
            };
            if let Some(t) = t {
                target.get_or_create(&l).set(t);
                on_target
                    .get_or_create(&l)
                    .set(if m.on_target == Some(true) { 1.0 } else { 0.0 });
            }
        }
        for q in &snap.health.queues {
            let l = labels(&[("priority", &q.priority)]);
            depth.get_or_create(&l).set(f64::from(q.depth));
            oldest.get_or_create(&l).set(duration_s(&q.oldest_age));
        }
        for role in &snap.health.roles {
            let l = labels(&[("role", &role.role)]);
            replicas.get_or_create(&l).set(f64::from(role.replicas));
            in_flight.get_or_create(&l).set(f64::from(role.in_flight));
            util.get_or_create(&l).set(role.utilization);
        }
        dead.get_or_create(&Vec::new())
            .set(snap.health.dead_letters as f64);
        open.get_or_create(&Vec::new())
            .set(f64::from(snap.health.gates_open));
        overdue
            .get_or_create(&Vec::new())
            .set(f64::from(snap.health.gates_overdue));
        let mut out = String::new();
        if let Err(e) = encode_registry(&mut out, &r) {
            tracing::warn!(error = %e, "encoding the tracker's metrics failed");
        }
        out
    }
}
