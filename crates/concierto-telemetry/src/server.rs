//! `GET /metrics`, `/healthz` and `/readyz` for one service process, and the
//! request counters for the process's own HTTP and gRPC servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use crate::init::TelemetryError;

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

/// Whether the process is ready: starting (`/readyz` 503) until its services
/// have started and its bus is connected, ready (200), then stopping (503)
/// once shutdown begins. Clones share the state.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

impl Readiness {
    /// Starting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every service started and the bus is connected.
    pub fn set_ready(&self) {
        // Never back from stopping.
        let _ = self
            .0
            .compare_exchange(STARTING, READY, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Shutdown began.
    pub fn set_stopping(&self) {
        self.0.store(STOPPING, Ordering::SeqCst);
    }

    /// True while ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst) == READY
    }

    fn describe(&self) -> &'static str {
        match self.0.load(Ordering::SeqCst) {
            STARTING => "starting",
            READY => "ready",
            _ => "stopping",
        }
    }
}

/// The registry's text, then `concierto_ready`: 1 when `/readyz` would answer
/// 200, else 0 (what deploy/prometheus/alerts.yml watches).
async fn metrics_text(State(r): State<Readiness>) -> Response {
    let ready = r.is_ready() && concierto_core::health::conditions().is_empty();
    let mut text = crate::metrics::render();
    text.push_str(&format!(
        "# HELP concierto_ready 1 while the process is ready (GET /readyz answers 200), else 0.\n\
         # TYPE concierto_ready gauge\n\
         concierto_ready {}\n",
        u8::from(ready)
    ));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 while the process is ready and no service reports a condition
/// ([`concierto_core::health`]: a failing store, a standby waiting for its
/// lease); else 503 with each reason on a line.
async fn readyz(State(r): State<Readiness>) -> Response {
    let conditions = concierto_core::health::conditions();
    if r.is_ready() && conditions.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let mut body = format!(
        "{}\n",
        if r.is_ready() {
            "not ready"
        } else {
            r.describe()
        }
    );
    for (key, why) in conditions {
        body.push_str(&format!("{key}: {why}\n"));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// The routes: `GET /metrics`, `/healthz`, `/readyz`.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

/// The metrics server of a process; [`MetricsServer::stop`] ends it.
#[derive(Debug)]
pub struct MetricsServer {
    /// Where it listens (the port is known even when `:0` was asked).
    pub local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Stops listening and waits for the server to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the metrics server ended abnormally");
        }
    }
}

/// An HTTP listener whose accepted connections have `TCP_NODELAY` set.
pub type NoDelayListener =
    axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

/// Sets `TCP_NODELAY` on each connection `listener` accepts, for
/// `axum::serve`: a small answer goes out at once instead of waiting on
/// Nagle's algorithm and the peer's delayed ACK (up to 40 ms a request).
pub fn no_delay(listener: tokio::net::TcpListener) -> NoDelayListener {
    use axum::serve::ListenerExt as _;
    fn tap(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
        }
    }
    listener.tap_io(tap as fn(&mut tokio::net::TcpStream))
}

/// Serves [`router`] on `addr` (e.g. `server.metrics_addr`).
pub async fn serve(addr: &str, readiness: Readiness) -> Result<MetricsServer, TelemetryError> {
    let listen_err = |source| TelemetryError::Listen {
        addr: addr.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_err)?;
    let local_addr = listener.local_addr().map_err(listen_err)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(readiness);
    let task = tokio::spawn(async move {
        let served = axum::serve(no_delay(listener), app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics server failed");
        }
    });
    Ok(MetricsServer {
        local_addr,
        stop,
        task,
    })
}

/// Counts every request `router` answers in `concierto_http_requests_total`,
/// by `service`, route pattern (`unmatched` when no route matched) and status.
pub fn count_http<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    service: &'static str,
) -> Router<S> {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| async move {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "unmatched".to_string());
            let response = next.run(req).await;
            crate::metrics::http_request(service, &route, response.status().as_u16());
            response
        },
    ))
}

/// A tower layer for a tonic server (`Server::builder().layer(..)`) counting
/// every call in `concierto_grpc_requests_total` by method and gRPC code.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// The gRPC code name of a `grpc-status` value.
pub fn grpc_code_name(code: &str) -> &'static str {
    match code.trim() {
        "0" => "OK",
        "1" => "CANCELLED",
        "2" => "UNKNOWN",
        "3" => "INVALID_ARGUMENT",
        "4" => "DEADLINE_EXCEEDED",
        "5" => "NOT_FOUND",
        "6" => "ALREADY_EXISTS",
        "7" => "PERMISSION_DENIED",
        "8" => "RESOURCE_EXHAUSTED",
        "9" => "FAILED_PRECONDITION",
        "10" => "ABORTED",
        "11" => "OUT_OF_RANGE",
        "12" => "UNIMPLEMENTED",
        "13" => "INTERNAL",
        "14" => "UNAVAILABLE",
        "15" => "DATA_LOSS",
        "16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

impl<S, B, RB> tower::Service<axum::http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        // `/package.Service/Method` → `Method`.
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .filter(|m| !m.is_empty())
            .unwrap_or("unknown")
            .to_string();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            match &out {
                // An error answer is trailers-only: its status is in the headers.
                // A success's status comes in the trailers, after the body.
                Ok(resp) => {
                    let code = resp
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .map(grpc_code_name)
                        .unwrap_or("OK");
                    // A name no service has must not become a label of its own:
                    // any client could grow the label set without bound.
                    let method = if code == "UNIMPLEMENTED" || method.len() > 64 {
                        "unknown"
                    } else {
                        method.as_str()
                    };
                    crate::metrics::grpc_request(method, code);
                }
                Err(_) => crate::metrics::grpc_request("unknown", "UNAVAILABLE"),
            }
            out
        })
    }
}
