//! The admin API client: connection flags, the channel (plain or TLS), the
//! bearer token on every call, and how a failure is told to the user.
//!
//! ```text
//! --server URL  ─▶ Endpoint (http:// or https:// with --ca / system roots)
//! --token T     ─▶ Bearer interceptor: `authorization: Bearer T` on every call
//!                  AdminServiceClient ─▶ a gRPC status ─▶ `concierto: <code>: <message>`, exit 1
//! ```
//!
//! The token is never printed: not in errors, not in `--help` (its environment
//! value is hidden), not in `Debug`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use concierto_proto::v1::admin_service_client::AdminServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use crate::output::Zone;

/// Where the admin API is and who is calling; on every admin command.
#[derive(Clone, Args)]
pub struct ConnArgs {
    /// The admin API (`http://host:port`, or `https://` for TLS).
    #[arg(
        long,
        global = true,
        env = "CONCIERTO_SERVER",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL"
    )]
    pub server: String,
    /// Your token (the studio holds its SHA-256 as `reviewers.<id>.token_sha256`).
    #[arg(
        long,
        global = true,
        env = "CONCIERTO_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an `https://` server (default: the
    /// system's roots).
    #[arg(long, global = true, env = "CONCIERTO_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The studio file, read for its `studio.timezone`: times are shown in the
    /// studio's zone (the local zone when the file cannot be read).
    #[arg(
        long,
        global = true,
        env = "CONCIERTO_STUDIO",
        default_value = "examples/studio/concierto.yaml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
    /// Show times in UTC instead of the studio's zone.
    #[arg(long, global = true)]
    pub utc: bool,
}

impl fmt::Debug for ConnArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnArgs")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("ca", &self.ca)
            .field("file", &self.file)
            .field("utc", &self.utc)
            .finish()
    }
}

/// Why a client command failed.
#[derive(Debug)]
pub enum CliError {
    /// The server answered with an error status.
    Status {
        /// The status.
        status: Status,
        /// A line on what to do, when there is one.
        hint: Option<String>,
    },
    /// No connection could be made.
    Unreachable {
        /// The address tried.
        addr: String,
        /// Why, with every cause.
        reason: String,
    },
    /// Bad arguments found after parsing (exit status 2, like clap's).
    Usage(String),
    /// Anything else (a file that cannot be read, ...).
    Other(String),
}

impl CliError {
    /// The process exit status: 2 for usage errors, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Status { status, hint } => {
                write!(f, "{}: {}", code_words(status.code()), status.message())?;
                if let Some(h) = hint {
                    write!(f, " ({h})")?;
                }
                Ok(())
            }
            CliError::Unreachable { addr, reason } => {
                write!(
                    f,
                    "unavailable: cannot reach the admin API at {addr}: {reason}"
                )
            }
            CliError::Usage(m) | CliError::Other(m) => f.write_str(m),
        }
    }
}

/// A gRPC code in words, as `concierto: <code>: <message>` prints it.
pub fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// An error and its causes, `: `-separated (tonic's transport errors keep the
/// useful part, e.g. `Connection refused`, in their sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// Puts `authorization: Bearer <token>` on every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The admin API client with the caller's token.
pub type AdminClient = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// A connected client and what the calls need to explain failures.
pub struct Conn {
    /// The client.
    pub client: AdminClient,
    /// The address it talks to.
    pub addr: String,
    /// The zone times are shown in.
    pub zone: Zone,
    has_token: bool,
}

/// Longest wait for the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the answer of a unary call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl ConnArgs {
    /// The server URL with a scheme (`host:port` means `http://host:port`).
    fn url(&self) -> String {
        let s = self.server.trim();
        if s.contains("://") {
            s.to_string()
        } else {
            format!("http://{s}")
        }
    }

    /// Connects now, so an unreachable server is reported before any call.
    pub async fn connect(&self) -> Result<Conn, CliError> {
        let addr = self.url();
        let tls = addr.starts_with("https://");
        if !tls && !addr.starts_with("http://") {
            return Err(CliError::Usage(format!(
                "--server {addr}: use an http:// or https:// URL"
            )));
        }
        if self.ca.is_some() && !tls {
            return Err(CliError::Usage(format!(
                "--ca is for https:// servers; --server is {addr}"
            )));
        }
        let bearer = match self.token.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => Some(
                MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| CliError::Usage("the token has characters a gRPC header cannot carry; tokens from `concierto token new` are hex".into()))?,
            ),
        };
        let mut endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|e| CliError::Usage(format!("--server {addr}: {}", chain(&e))))?
            .connect_timeout(CONNECT_TIMEOUT);
        if tls {
            let mut cfg = ClientTlsConfig::new();
            cfg = match &self.ca {
                Some(file) => {
                    let pem = std::fs::read(file)
                        .map_err(|e| CliError::Other(format!("--ca {}: {e}", file.display())))?;
                    cfg.ca_certificate(Certificate::from_pem(pem))
                }
                None => cfg.with_native_roots(),
            };
            endpoint = endpoint
                .tls_config(cfg)
                .map_err(|e| CliError::Other(format!("TLS settings for {addr}: {}", chain(&e))))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| CliError::Unreachable {
                addr: addr.clone(),
                reason: chain(&e),
            })?;
        Ok(Conn {
            client: AdminServiceClient::with_interceptor(channel, Bearer(bearer.clone())),
            addr,
            zone: Zone::pick(self.utc, &self.file),
            has_token: bearer.is_some(),
        })
    }
}

impl Conn {
    /// A failed call as the user sees it.
    pub fn error(&self, status: Status) -> CliError {
        let hint = match status.code() {
            Code::Unauthenticated if !self.has_token => {
                Some("no token given: pass --token or set CONCIERTO_TOKEN".to_string())
            }
            // Failed in the transport, not in the service: say where, and why
            // when tonic kept the cause.
            Code::Unknown | Code::Unavailable | Code::Internal
                if std::error::Error::source(&status).is_some()
                    || status.message() == "transport error" =>
            {
                let why = std::error::Error::source(&status)
                    .map(|e| {
                        let c = chain(e);
                        format!(": {}", c.strip_prefix("transport error: ").unwrap_or(&c))
                    })
                    .unwrap_or_default();
                let tls = if self.addr.starts_with("http://") {
                    "; if the server uses TLS, use an https:// URL"
                } else {
                    ""
                };
                Some(format!("talking to {}{why}{tls}", self.addr))
            }
            _ => None,
        };
        CliError::Status { status, hint }
    }

    /// Awaits a unary call, at most [`CALL_TIMEOUT`], its status mapped.
    pub async fn unary<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(self.error(s)),
            Err(_) => Err(CliError::Status {
                status: Status::deadline_exceeded(format!(
                    "no answer from {} in {}s",
                    self.addr,
                    CALL_TIMEOUT.as_secs()
                )),
                hint: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: &str) -> ConnArgs {
        ConnArgs {
            server: server.into(),
            token: Some("s3cret-token".into()),
            ca: None,
            file: "concierto.yaml".into(),
            utc: false,
        }
    }

    #[test]
    fn a_bare_address_means_http() {
        assert_eq!(args("127.0.0.1:50051").url(), "http://127.0.0.1:50051");
        assert_eq!(args("https://admin.example").url(), "https://admin.example");
    }

    #[test]
    fn debug_hides_the_token() {
        let text = format!("{:?}", args("x"));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("<hidden>"), "{text}");
    }

    #[test]
    fn statuses_print_their_code_in_words() {
        let e = CliError::Status {
            status: Status::permission_denied("not yours"),
            hint: None,
        };
        assert_eq!(e.to_string(), "permission denied: not yours");
        assert_eq!(e.exit_code(), 1);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_server_names_the_address_tried() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = match args(&format!("127.0.0.1:{port}")).connect().await {
            Ok(_) => panic!("connected to a closed port"),
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "unavailable: cannot reach the admin API at http://127.0.0.1:{port}: "
            )),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[tokio::test]
    async fn ca_with_a_plain_server_is_a_usage_error() {
        let mut a = args("http://127.0.0.1:1");
        a.ca = Some("ca.pem".into());
        let err = a.connect().await.err().expect("refused");
        assert_eq!(err.exit_code(), 2, "{err}");
    }
}
