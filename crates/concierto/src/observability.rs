//! The telemetry of one `up`, `serve` or `agent` process: logs, trace export,
//! and the `/metrics`, `/healthz`, `/readyz` server on `server.metrics_addr`.

use anyhow::Context as _;
use concierto_core::config::{LogFormat, Studio};
use concierto_telemetry::{MetricsServer, Readiness, TelemetryGuard};

/// Started before the services; [`Observability::ready`] once they are,
/// [`Observability::stopping`] when shutdown begins, [`Observability::finish`]
/// last (exports the spans still buffered).
pub struct Observability {
    guard: TelemetryGuard,
    readiness: Readiness,
    server: Option<MetricsServer>,
}

impl Observability {
    /// Logs as `server.log_format` says (`--log-json` overrides it), spans to
    /// `server.otlp_endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) as `service`,
    /// and the metrics server on `server.metrics_addr` unless it is empty.
    pub async fn start(studio: &Studio, service: &str, log_json: bool) -> anyhow::Result<Self> {
        Self::start_on(studio, service, log_json, &studio.server.metrics_addr).await
    }

    /// [`Observability::start`] with the metrics server on `metrics_addr`
    /// (`serve` and `agent` pick it with [`crate::metrics_ports`]); port 0 takes
    /// any free port, and the address bound is logged at info either way.
    pub async fn start_on(
        studio: &Studio,
        service: &str,
        log_json: bool,
        metrics_addr: &str,
    ) -> anyhow::Result<Self> {
        let format = if log_json {
            LogFormat::Json
        } else {
            studio.server.log_format
        };
        let endpoint = concierto_telemetry::otlp_endpoint(&studio.server.otlp_endpoint);
        let guard = concierto_telemetry::init(service, format, endpoint.as_deref())?;
        let readiness = Readiness::new();
        let addr = metrics_addr.trim();
        let server = if addr.is_empty() {
            None
        } else {
            let server = concierto_telemetry::serve(addr, readiness.clone())
                .await
                .with_context(|| {
                    format!("metrics on {addr}: set server.metrics_addr (CONCIERTO__SERVER__METRICS_ADDR) to a free address, or empty to turn it off")
                })?;
            tracing::info!(addr = %server.local_addr, "metrics on http://{} (/metrics, /healthz, /readyz)", server.local_addr);
            Some(server)
        };
        Ok(Observability {
            guard,
            readiness,
            server,
        })
    }

    /// The services started and the bus is connected: `/readyz` answers 200.
    pub fn ready(&self) {
        self.readiness.set_ready();
    }

    /// Shutdown began: `/readyz` answers 503.
    pub fn stopping(&self) {
        self.readiness.set_stopping();
    }

    /// Stops the metrics server and exports the last spans.
    pub async fn finish(self) {
        if let Some(s) = self.server {
            s.stop().await;
        }
        self.guard.shutdown().await;
    }
}
