//! Test helpers (feature `testing`): spans go to an in-memory exporter
//! instead of OTLP, so a test can look at what every service recorded.

use std::sync::OnceLock;

use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs (once per process) a subscriber whose spans are exported, one by
/// one as they end, to an in-memory exporter, with log lines on the test
/// writer, and the bus observer. Returns the exporter (shared by every call).
///
/// If another global subscriber was installed first, spans are not recorded
/// and the exporter stays empty.
pub fn install_in_memory(service: &str) -> InMemorySpanExporter {
    EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .with_resource(crate::init::resource(service))
                .build();
            let logs = tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                );
            let _ = tracing_subscriber::registry()
                .with(vec![
                    tracing_subscriber::Layer::boxed(logs),
                    crate::init::otel_layer(&provider),
                ])
                .try_init();
            crate::init::observe_bus();
            let _ = PROVIDER.set(provider);
            exporter
        })
        .clone()
}

/// Spans finished so far.
pub fn finished_spans(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    exporter.get_finished_spans().unwrap_or_default()
}

/// The value of attribute `key` of `span`, as text.
pub fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}
