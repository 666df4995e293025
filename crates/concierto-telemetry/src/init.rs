//! The process's tracing subscriber: log lines and, with an OTLP endpoint,
//! span export.

use std::sync::Arc;
use std::time::Duration;

use concierto_core::config::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

use crate::propagation::BusTelemetry;

/// How long shutting down waits for the last spans to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a bad endpoint, ...).
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Exporter {
        /// The endpoint given.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
    /// A global subscriber was installed already in this process.
    #[error("a tracing subscriber is already installed in this process")]
    AlreadyInstalled,
    /// The metrics server could not listen.
    #[error("cannot serve metrics on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Keeps the span exporter alive; shutting it down (or dropping it) exports
/// the spans still buffered.
#[must_use = "dropping the guard shuts the span exporter down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.provider.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the exporter, off the async threads
    /// (the exporter's own thread needs the runtime to send).
    pub async fn shutdown(mut self) {
        if let Some(p) = self.provider.take() {
            let done =
                tokio::task::spawn_blocking(move || p.shutdown_with_timeout(SHUTDOWN_TIMEOUT));
            match done.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("concierto: exporting the last spans failed: {e}"),
                Err(e) => eprintln!("concierto: the span exporter's shutdown failed: {e}"),
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            eprintln!("concierto: exporting the last spans failed: {e}");
        }
    }
}

/// The OTLP endpoint to use: `server.otlp_endpoint` when set, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` when set, else none (no export).
pub fn otlp_endpoint(configured: &str) -> Option<String> {
    let configured = configured.trim();
    if !configured.is_empty() {
        return Some(configured.to_string());
    }
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The resource every span of this process carries: `service.name`.
pub(crate) fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_string())
        .build()
}

/// Log lines: `RUST_LOG` (default `info`), text (colours on a terminal) or JSON, on stderr.
pub(crate) fn fmt_layer(format: LogFormat) -> Box<dyn Layer<Registry> + Send + Sync> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let base = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => base.with_filter(filter).boxed(),
        LogFormat::Json => base.json().with_filter(filter).boxed(),
    }
}

/// The span layer: Concierto's spans at info and above, whatever `RUST_LOG`
/// says about log lines.
pub(crate) fn otel_layer(provider: &SdkTracerProvider) -> Box<dyn Layer<Registry> + Send + Sync> {
    let tracer = provider.tracer("concierto");
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target("concierto", tracing::Level::INFO))
        .boxed()
}

/// Installs the bus observer (trace context stamped on outgoing messages,
/// messages counted). Idempotent.
pub(crate) fn observe_bus() {
    concierto_bus::observe::set_observer(Arc::new(BusTelemetry));
}

/// Sets up the process's telemetry: log lines in `format` (filtered by
/// `RUST_LOG`, default `info`), and, when `otlp_endpoint` is given, spans
/// exported in batches over OTLP gRPC with `service.name = service`. Also
/// installs the bus observer (trace context across the bus, message counts).
///
/// Call it inside the tokio runtime (the exporter's channel lives there) and
/// shut the guard down before the runtime ends.
pub fn init(
    service: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<TelemetryGuard, TelemetryError> {
    let provider = match otlp_endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| TelemetryError::Exporter {
                    endpoint: endpoint.to_string(),
                    reason: e.to_string(),
                })?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource(service))
                    .build(),
            )
        }
        None => None,
    };
    let mut layers = vec![fmt_layer(format)];
    if let Some(p) = &provider {
        layers.push(otel_layer(p));
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    observe_bus();
    if let Some(endpoint) = otlp_endpoint.filter(|_| provider.is_some()) {
        tracing::info!(%service, endpoint, "exporting traces over OTLP");
    }
    Ok(TelemetryGuard { provider })
}
