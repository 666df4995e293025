//! Observability for every Concierto service process: log lines (text or
//! JSON), OpenTelemetry traces exported over OTLP, W3C trace context carried
//! across the bus, and a Prometheus `/metrics` with `/healthz` and `/readyz`.
//!
//! ```text
//!  init(service, format, otlp) ──▶ tracing subscriber: fmt (text|json, RUST_LOG)
//!                                   + OpenTelemetry layer ──batch──▶ OTLP gRPC
//!                                   + bus observer (stamps traceparent, counts)
//!
//!  scheduler.fire ──run.start (traceparent)──▶ orchestrator.start_run
//!     (root span)                               │ run's traceparent stored with the run
//!                                               ▼
//!                       orchestrator.dispatch ──task.<role> (traceparent)──▶ agent.task
//!                                                                               │
//!                       orchestrator.result ◀──result.<role> (traceparent)──────┘
//!
//!  serve(metrics_addr, readiness) ──▶ GET /metrics (Prometheus text), /healthz, /readyz
//! ```
//!
//! - [`init`] installs the process's subscriber and returns a
//!   [`TelemetryGuard`] that flushes spans when shut down or dropped.
//! - [`propagation`] turns spans into `traceparent` values and back.
//! - [`metrics`] holds the process's registry and the functions services call
//!   to count what they do; [`metrics::add_text_source`] appends text rendered
//!   elsewhere (the tracker's series).
//! - [`server`] serves the registry and the process's health.

mod init;
pub mod metrics;
pub mod propagation;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use init::{TelemetryError, TelemetryGuard, init, otlp_endpoint};
pub use metrics::add_text_source;
pub use propagation::{context_of, follow, span_traceparent, traceparent_of};
pub use server::{MetricsServer, Readiness, serve};
