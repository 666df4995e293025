//! The admin service: `concierto.v1.AdminService` over gRPC (tonic), what the
//! `concierto` CLI and any gRPC client use to see runs, decide quality gates,
//! give feedback and fire triggers (DESIGN.md section 10).
//!
//! It owns no data: runs and gates are the orchestrator's, triggers the
//! scheduler's, feedback the feedback service's (and its replies the feedback
//! router's); it asks them over bus requests (submitting feedback too:
//! `feedback.submit`), and starts runs by durable publishes. So any number of
//! admin replicas can run.
//!
//! Every call carries `authorization: Bearer <token>`; the token's SHA-256
//! must be a `reviewers.<id>.token_sha256` in the studio file, which gives the
//! caller's identity and roles ([`auth`]). Missing or unknown token:
//! `UNAUTHENTICATED`. A changed studio is taken live: the next call checks
//! its reviewers' tokens and reads its workflows (the listening address and
//! TLS need a restart). A gate decision by someone who is not one of its
//! reviewers: `PERMISSION_DENIED`; unknown id: `NOT_FOUND`; deciding a closed
//! gate: `FAILED_PRECONDITION`; the owning service down: `UNAVAILABLE`.
//! Server reflection (v1 and v1alpha) and the standard health service
//! (`grpc.health.v1.Health`) are served too, without a token; TLS when
//! `server.tls` names a certificate and key.

pub mod auth;
pub mod dead_letters;
mod service;
mod start;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use concierto_bus::Bus;
use concierto_core::config::{Studio, TlsSection};
use concierto_core::live::NeedsRestart;
use concierto_core::service::ServiceHandle;
use concierto_proto::v1::admin_service_server::AdminServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use auth::{Identities, Identity, token_sha256};
pub use service::{
    Admin, RECORD_METRIC_ROLES, ask_service, bus_status, record_metric_denied, remote_status,
};
pub use service::{MAX_PARAM_KEY_BYTES, MAX_PARAM_VALUE_BYTES, MAX_RUN_PARAMS};
pub use start::start_run_message;

/// What can stop the admin service from starting.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS files could not be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Reflection could not be built from the descriptors.
    #[error("reflection: {0}")]
    Reflection(String),
}

/// Settings of the admin service.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Where to listen (`127.0.0.1:0` for any free port).
    pub addr: String,
    /// TLS, when configured.
    pub tls: Option<TlsSection>,
    /// Longest wait for the owning service's answer.
    pub request_timeout: Duration,
}

impl AdminOptions {
    /// From the studio's `server` section.
    pub fn from_studio(studio: &Studio) -> Self {
        AdminOptions {
            addr: studio.server.grpc_addr.clone(),
            tls: studio.server.tls.clone(),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Plain gRPC on a free loopback port, 5 s for answers (tests, local tools).
    pub fn loopback() -> Self {
        AdminOptions {
            addr: "127.0.0.1:0".into(),
            tls: None,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Starts the admin service; returns its handle and the address it listens on.
pub async fn start(
    studio: Arc<Studio>,
    bus: Arc<dyn Bus>,
    opts: AdminOptions,
) -> Result<(ServiceHandle, SocketAddr), AdminError> {
    let listener = TcpListener::bind(&opts.addr)
        .await
        .map_err(|source| AdminError::Bind {
            addr: opts.addr.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| AdminError::Bind {
        addr: opts.addr.clone(),
        source,
    })?;

    let (handle, control) = ServiceHandle::new("admin");
    let started = studio.clone();
    let admin = Admin::new(studio, bus, opts.request_timeout, control.signal.clone());
    let take = admin.studio_hook();
    let restart = NeedsRestart::new("admin");
    let handle = handle.on_studio_change(move |next: Arc<Studio>| {
        let (was, now) = (&started.server, &next.server);
        restart.check("server.grpc_addr", &was.grpc_addr, &now.grpc_addr);
        restart.check("server.tls", &tls_text(&was.tls), &tls_text(&now.tls));
        take(next);
    });
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(concierto_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| AdminError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(concierto_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| AdminError::Reflection(e.to_string()))?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdminServiceServer<Admin>>()
        .await;

    let mut builder =
        tonic::transport::Server::builder().layer(concierto_telemetry::server::GrpcMetricsLayer);
    if let Some(tls) = &opts.tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| AdminError::Tls(format!("{}: {e}", p.display())))
        };
        let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| AdminError::Tls(e.to_string()))?;
    }
    let router = builder
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AdminServiceServer::new(admin));

    let mut signal = control.signal.clone();
    tokio::spawn(async move {
        let result = router
            .serve_with_incoming_shutdown(no_delay(listener), async move {
                signal.stopped().await;
            })
            .await;
        tracing::info!("admin service stopped");
        control.finished(result.map_err(|e| format!("admin server: {e}")));
    });
    tracing::info!(%addr, tls = opts.tls.is_some(), "admin service listening");
    Ok((handle, addr))
}

/// The connections `listener` accepts, each with `TCP_NODELAY` set: tonic's
/// own `tcp_nodelay` applies only to listeners it binds itself, and without
/// it a small reply can wait on Nagle's algorithm and the client's delayed
/// ACK (up to 40 ms a call).
fn no_delay(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt as _;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
            }
        })
    })
}

/// `server.tls` as a log shows it.
fn tls_text(tls: &Option<TlsSection>) -> String {
    match tls {
        Some(t) => format!("cert {} key {}", t.cert.display(), t.key.display()),
        None => "off".to_string(),
    }
}

/// The identities the studio gives tokens to (for start-up logs).
pub fn identities(studio: &Studio) -> Identities {
    Identities::from_studio(studio)
}

#[cfg(test)]
mod no_delay_tests {
    use futures::StreamExt as _;

    #[tokio::test]
    async fn accepted_connections_have_tcp_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(super::no_delay(listener));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
