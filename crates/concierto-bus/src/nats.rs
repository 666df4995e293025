//! The NATS implementation: core NATS for events and request/reply, JetStream
//! for streams and shared durable pull consumers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use async_trait::async_trait;
use concierto_proto::v1::DeadLetter;
use futures::StreamExt;

use crate::bus::{
    Acker, Bus, Consumer, ConsumerSpec, DeadLetters, PublishAck, RawConsumer, RawDelivery,
    Retention, Settle, StreamSpec, Subscription, dead_letter_message, dead_letter_subject,
};
use crate::error::{BusError, Result};
use crate::message::{Headers, MSG_ID, Message, Outgoing};
use crate::subject::{matches, validate_filter, validate_publish};

/// How to connect.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Prepended to every subject; also names the streams (`concierto.` gives
    /// `CONCIERTO_TASKS`).
    pub prefix: String,
    /// The connection's name, shown by the server's monitoring.
    pub client_name: String,
    /// How long to wait for the first connection.
    pub connect_timeout: Duration,
    /// How to log in (default: anonymously, or as the URL says).
    pub auth: NatsAuth,
    /// TLS to the server, when configured.
    pub tls: Option<NatsTls>,
    /// Where this connection's inboxes (reply subjects) live. `None`:
    /// `_INBOX.<user>` when logging in as a user (so the server can allow each
    /// user only its own replies, as deploy/nats/nats.conf does), else `_INBOX`.
    pub inbox_prefix: Option<String>,
    /// Copies JetStream keeps of every stream and bucket this connection
    /// creates (`server.bus.replicas`; at least a stream's own
    /// [`StreamSpec::replicas`]). Above 1 (a cluster) every durable message
    /// also gets a message id when it has none, so that a publish whose
    /// acknowledgement was lost to a node's death is sent again safely.
    pub replicas: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            prefix: "concierto.".to_string(),
            client_name: "concierto".to_string(),
            connect_timeout: Duration::from_secs(5),
            auth: NatsAuth::None,
            tls: None,
            inbox_prefix: None,
            replicas: 1,
        }
    }
}

/// How a connection logs in to NATS. Secrets are never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    /// No credentials (or those in the URL, `nats://user:password@host`).
    #[default]
    None,
    /// A user and its password.
    UserPassword {
        /// The user.
        user: String,
        /// Its password.
        password: String,
    },
    /// A token.
    Token(String),
    /// A NATS credentials file (user JWT and nkey seed).
    CredsFile(PathBuf),
    /// A user nkey seed (`SU...`).
    NKey(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            NatsAuth::Token(_) => f.write_str("Token(<redacted>)"),
            NatsAuth::CredsFile(p) => f.debug_tuple("CredsFile").field(p).finish(),
            NatsAuth::NKey(_) => f.write_str("NKey(<redacted>)"),
        }
    }
}

impl NatsAuth {
    /// Who logs in, for messages: `user orchestrator`, `a token`, ...
    /// (never the secret).
    pub fn describe(&self) -> String {
        match self {
            NatsAuth::None => "no credentials".to_string(),
            NatsAuth::UserPassword { user, .. } => format!("user {user}"),
            NatsAuth::Token(_) => "a token".to_string(),
            NatsAuth::CredsFile(p) => format!("the credentials file {}", p.display()),
            NatsAuth::NKey(_) => "an nkey".to_string(),
        }
    }
}

/// TLS to NATS: PEM files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// CA certificates to check the server's certificate against (none: the
    /// system's roots).
    pub ca: Option<PathBuf>,
    /// Client certificate and its key, for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Refuse a server that does not offer TLS.
    pub required: bool,
}

/// `url` with any user, password or token replaced by `***`, for logs and
/// errors (`nats://***@nats:4222`). Each URL of a comma-separated list.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| {
            let (scheme, rest) = match u.split_once("://") {
                Some((s, r)) => (Some(s), r),
                None => (None, u),
            };
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            let authority = match authority.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => authority.to_string(),
            };
            match scheme {
                Some(s) => format!("{s}://{authority}{path}"),
                None => format!("{authority}{path}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// How long a publish, flush, pull or acknowledgement may wait for the
/// connection. While NATS is unreachable the client queues them until it
/// reconnects (a flush then waits forever, a publish once its queue is full):
/// after this they fail instead, so that nothing, a stop included, hangs on a
/// server that is gone. (A durable publish's acknowledgement and a request
/// have their own timeouts.)
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The NATS bus. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<NatsInner>,
}

struct NatsInner {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    stream_prefix: String,
    /// [`SEND_TIMEOUT`].
    send_timeout: Duration,
    /// Set once this connection has declared a stream storing dead letters; until
    /// then dead letters go out on core NATS (a stream made by another process
    /// still stores them).
    durable_dead_letters: AtomicBool,
    /// [`NatsOptions::replicas`].
    replicas: usize,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`, or a cluster's nodes
    /// comma-separated: `nats://a:4222,nats://b:4222`, tried in random order
    /// and reconnected to when one dies) with the options' credentials and TLS. Credentials the server refuses are
    /// [`BusError::Refused`]; errors never show a password or token, not even
    /// one in the URL.
    pub async fn connect(url: &str, opts: NatsOptions) -> Result<Self> {
        let shown = redact_url(url);
        // Credentials in the URL (`nats://user:password@host`, `nats://token@host`)
        // are used when the options give none; the client is given the URL
        // without them.
        let (plain_url, in_url) = credentials_in_url(url);
        let mut opts = opts;
        if opts.auth == NatsAuth::None
            && let Some(auth) = in_url
        {
            opts.auth = auth;
        }
        let mut o = async_nats::ConnectOptions::new()
            .name(&opts.client_name)
            .connection_timeout(opts.connect_timeout)
            .event_callback(|event| async move { log_event(event) });
        if let Some(prefix) = inbox_prefix(&opts) {
            o = o.custom_inbox_prefix(prefix);
        }
        o = match &opts.auth {
            NatsAuth::None => o,
            NatsAuth::UserPassword { user, password } => {
                o.user_and_password(user.clone(), password.clone())
            }
            NatsAuth::Token(t) => o.token(t.clone()),
            NatsAuth::NKey(seed) => o.nkey(seed.clone()),
            NatsAuth::CredsFile(path) => o.credentials_file(path).await.map_err(|e| {
                BusError::Transport(format!(
                    "reading the NATS credentials file {}: {e}",
                    path.display()
                ))
            })?,
        };
        if let Some(tls) = &opts.tls {
            if let Some(ca) = &tls.ca {
                o = o.add_root_certificates(ca.clone());
            }
            if let Some((cert, key)) = &tls.client_cert {
                o = o.add_client_certificate(cert.clone(), key.clone());
            }
            o = o.require_tls(tls.required);
        }
        // The client takes a list, not a comma-joined string.
        let servers: Vec<&str> = plain_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let client = o
            .connect(servers.as_slice())
            .await
            .map_err(|e| connect_error(&shown, &opts, &e))?;
        Ok(Self::with_replicas(client, &opts.prefix, opts.replicas))
    }

    /// Uses an existing connection (streams and buckets with one copy unless
    /// a [`StreamSpec`] asks for more).
    pub fn from_client(client: async_nats::Client, prefix: &str) -> Self {
        Self::with_replicas(client, prefix, 1)
    }

    /// Uses an existing connection; [`NatsOptions::replicas`] is `replicas`.
    pub fn with_replicas(client: async_nats::Client, prefix: &str, replicas: usize) -> Self {
        let js = jetstream::new(client.clone());
        let stream_prefix: String = prefix
            .trim_end_matches('.')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        NatsBus {
            inner: Arc::new(NatsInner {
                client,
                js,
                prefix: prefix.to_string(),
                stream_prefix,
                send_timeout: SEND_TIMEOUT,
                durable_dead_letters: AtomicBool::new(false),
                replicas: replicas.max(1),
            }),
        }
    }

    /// The underlying client, for what the trait does not cover.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The JetStream name of a logical stream (`TASKS` -> `CONCIERTO_TASKS`).
    pub fn stream_name(&self, logical: &str) -> String {
        if self.inner.stream_prefix.is_empty() {
            logical.to_string()
        } else {
            format!("{}_{logical}", self.inner.stream_prefix)
        }
    }

    fn full(&self, subject: &str) -> String {
        let mut full = String::with_capacity(self.inner.prefix.len() + subject.len());
        full.push_str(&self.inner.prefix);
        full.push_str(subject);
        full
    }

    fn convert(&self, m: async_nats::Message) -> Message {
        convert(&self.inner.prefix, m)
    }
}

/// `url` without the credentials in it, and those credentials: `user:password`
/// (percent-decoded) or a token. Each URL of a comma-separated list is
/// cleaned; the credentials are the first URL's that has some.
fn credentials_in_url(url: &str) -> (String, Option<NatsAuth>) {
    let mut found = None;
    let plain: Vec<String> = url
        .split(',')
        .map(|u| {
            let (scheme, rest) = match u.split_once("://") {
                Some((s, r)) => (Some(s), r),
                None => (None, u),
            };
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            let host = match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    if found.is_none() && !userinfo.is_empty() {
                        found = Some(match userinfo.split_once(':') {
                            Some((user, password)) => NatsAuth::UserPassword {
                                user: percent_decode(user),
                                password: percent_decode(password),
                            },
                            None => NatsAuth::Token(percent_decode(userinfo)),
                        });
                    }
                    host
                }
                None => authority,
            };
            match scheme {
                Some(s) => format!("{s}://{host}{path}"),
                None => format!("{host}{path}"),
            }
        })
        .collect();
    (plain.join(","), found)
}

/// `%XX` escapes decoded (others kept as written).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The inbox prefix of a connection: the configured one, else `_INBOX.<user>`
/// for a user login (the user as one subject token).
fn inbox_prefix(opts: &NatsOptions) -> Option<String> {
    opts.inbox_prefix.clone().or_else(|| match &opts.auth {
        NatsAuth::UserPassword { user, .. } => {
            let token: String = user
                .chars()
                .map(|c| match c {
                    '.' | '*' | '>' => '_',
                    c if c.is_whitespace() => '_',
                    c => c,
                })
                .collect();
            Some(format!("_INBOX.{token}"))
        }
        _ => None,
    })
}

/// A failed connect as a [`BusError`] that says what to check.
fn connect_error(url: &str, opts: &NatsOptions, e: &async_nats::ConnectError) -> BusError {
    use async_nats::ConnectErrorKind as K;
    let auth = &opts.auth;
    // The client never sees the credentials in the URL, so its message holds none.
    let detail = e.to_string();
    let tls_trouble = {
        let d = detail.to_ascii_lowercase();
        d.contains("certificate") || d.contains("tls") || d.contains("handshake")
    };
    match e.kind() {
        K::AuthorizationViolation => BusError::Refused(match auth {
            NatsAuth::UserPassword { user, .. } => format!(
                "NATS refused the credentials for user {user} (authorization violation) at {url}: check the user's password (the variable server.bus.password_env names, CONCIERTO_NATS_PASSWORD by default) and its entry in the server's configuration"
            ),
            NatsAuth::None => format!(
                "NATS at {url} refused a connection without credentials (authorization violation): give this process its NATS user (server.bus.user or CONCIERTO_NATS_USER, with CONCIERTO_NATS_PASSWORD), a token, a credentials file or an nkey"
            ),
            other => format!(
                "NATS refused the credentials ({}) (authorization violation) at {url}",
                other.describe()
            ),
        }),
        K::Authentication => BusError::Refused(format!(
            "cannot log in to NATS at {url} with {}: {detail} (is the nkey seed or credentials file valid?)",
            auth.describe()
        )),
        K::Tls => BusError::Transport(format!(
            "TLS to NATS at {url} failed: {detail} (check server.bus.tls: the CA, the client certificate and key, and that the server speaks TLS)"
        )),
        K::Io if tls_trouble || opts.tls.is_some() => BusError::Transport(format!(
            "TLS to NATS at {url} failed: {detail} (check server.bus.tls: the CA the server's certificate is signed by, the client certificate and key when the server verifies clients)"
        )),
        _ => BusError::Transport(format!("connecting to {url}: {detail}")),
    }
}

/// The connection's events in the log: a refused publish or subscription
/// (NATS permissions) is an error of this process's configuration.
fn log_event(event: async_nats::Event) {
    match event {
        async_nats::Event::ServerError(e) => {
            let text = e.to_string();
            if text.to_ascii_lowercase().contains("permissions violation") {
                tracing::error!(error = %text, "NATS refused an operation of this process: its user lacks the permission (see deploy/nats/nats.conf)");
            } else {
                tracing::error!(error = %text, "NATS server error");
            }
        }
        async_nats::Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
        async_nats::Event::Connected => tracing::debug!("connected to NATS"),
        other => tracing::debug!(event = %other, "NATS connection event"),
    }
}

/// `fut`, or a transport error naming `what` once `after` has passed: NATS is
/// unreachable and the client is holding it until it reconnects.
async fn bounded<T>(
    what: impl std::fmt::Display,
    after: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(BusError::Transport(format!(
            "{what}: NATS did not take it within {after:?} (is the server reachable?)"
        ))),
    }
}

/// `<what> on <subject>`, for [`bounded`]: written out only when it is shown
/// (not once per message).
struct On<'a>(&'static str, &'a str);

impl std::fmt::Display for On<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.0, self.1)
    }
}

/// A stream message that is not there (deleted, expired): NATS 2.9 says
/// "no message found" (10037) or "sequence N not found" (10043).
fn is_missing(error: &str) -> bool {
    error.contains("no message found")
        || error.contains("not found")
        || error.contains("10037")
        || error.contains("10043")
}

fn convert(prefix: &str, m: async_nats::Message) -> Message {
    let subject = m.subject.as_str();
    Message {
        subject: subject.strip_prefix(prefix).unwrap_or(subject).to_string(),
        reply: m.reply.map(|r| r.to_string()),
        headers: m.headers.as_ref().map(from_header_map).unwrap_or_default(),
        payload: m.payload,
    }
}

fn to_header_map(h: &Headers) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    for (k, v) in h.iter() {
        map.insert(k, v);
    }
    map
}

fn from_header_map(map: &async_nats::HeaderMap) -> Headers {
    let mut h = Headers::new();
    for (k, values) in map.iter() {
        if let Some(v) = values.first() {
            h.insert(k.to_string(), v.as_str());
        }
    }
    h
}

#[async_trait]
impl DeadLetters for NatsBus {
    async fn dead_letter(&self, letter: DeadLetter) -> Result<()> {
        let (subject, out) = dead_letter_message(&letter);
        if self.inner.durable_dead_letters.load(Ordering::Relaxed) {
            self.publish_durable(&subject, out).await.map(|_| ())
        } else {
            self.publish(&subject, out).await?;
            self.flush().await
        }
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn stream_messages(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, Message)>> {
        let name = self.stream_name(stream);
        let mut js_stream = self
            .inner
            .js
            .get_stream(&name)
            .await
            .map_err(|e| BusError::NotFound(format!("stream {name}: {e}")))?;
        let state = js_stream
            .info()
            .await
            .map_err(BusError::transport)?
            .state
            .clone();
        let mut out = Vec::new();
        let mut seq = from.max(state.first_sequence);
        while seq <= state.last_sequence && out.len() < max {
            match js_stream.get_raw_message(seq).await {
                Ok(raw) => {
                    let subject = raw.subject.as_str();
                    let headers = from_header_map(&raw.headers);
                    out.push((
                        seq,
                        Message {
                            subject: subject
                                .strip_prefix(self.inner.prefix.as_str())
                                .unwrap_or(subject)
                                .to_string(),
                            reply: None,
                            headers,
                            payload: raw.payload.clone(),
                        },
                    ));
                }
                // A gap: deleted or expired.
                Err(e) if is_missing(&e.to_string()) => {}
                Err(e) => return Err(BusError::transport(e)),
            }
            seq += 1;
        }
        Ok(out)
    }

    async fn delete_stream_message(&self, stream: &str, seq: u64) -> Result<bool> {
        let name = self.stream_name(stream);
        let js_stream = self
            .inner
            .js
            .get_stream(&name)
            .await
            .map_err(|e| BusError::NotFound(format!("stream {name}: {e}")))?;
        match js_stream.delete_message(seq).await {
            Ok(deleted) => Ok(deleted),
            Err(e) if is_missing(&e.to_string()) => Ok(false),
            Err(e) => Err(BusError::transport(e)),
        }
    }

    async fn leases(&self) -> Result<Arc<dyn crate::lease::LeaseStore>> {
        let bucket = self.stream_name("LEASES");
        Ok(Arc::new(
            crate::lease::NatsLeases::open(&self.inner.js, &bucket, self.inner.replicas).await?,
        ))
    }

    async fn replica(
        &self,
        name: &str,
        replicas: usize,
    ) -> Result<Arc<dyn crate::replica::ReplicaStore>> {
        let bucket = self.stream_name(name);
        Ok(Arc::new(
            crate::replica::NatsReplica::open(&self.inner.js, &bucket, replicas).await?,
        ))
    }

    async fn publish(&self, subject: &str, mut msg: Outgoing) -> Result<()> {
        validate_publish(subject)?;
        crate::observe::outgoing(subject, &mut msg);
        let full = self.full(subject);
        let client = &self.inner.client;
        bounded(
            On("publish", subject),
            self.inner.send_timeout,
            async move {
                let result = if msg.headers.is_empty() {
                    client.publish(full, msg.payload).await
                } else {
                    client
                        .publish_with_headers(full, to_header_map(&msg.headers), msg.payload)
                        .await
                };
                result.map_err(BusError::transport)
            },
        )
        .await
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription> {
        validate_filter(subject)?;
        let sub = self
            .inner
            .client
            .subscribe(self.full(subject))
            .await
            .map_err(BusError::transport)?;
        // Once this returns the server has the interest: a request sent right
        // after by another client finds this responder (no NoResponders race).
        self.flush().await?;
        let me = self.clone();
        Ok(Subscription {
            inner: Box::pin(sub.map(move |m| me.convert(m))),
            subject: subject.to_string(),
            dead_letters: Arc::new(self.clone()),
        })
    }

    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription> {
        validate_filter(subject)?;
        let sub = self
            .inner
            .client
            .queue_subscribe(self.full(subject), group.to_string())
            .await
            .map_err(BusError::transport)?;
        // Once this returns the server has the interest: a request sent right
        // after by another client finds this responder (no NoResponders race).
        self.flush().await?;
        let me = self.clone();
        Ok(Subscription {
            inner: Box::pin(sub.map(move |m| me.convert(m))),
            subject: subject.to_string(),
            dead_letters: Arc::new(self.clone()),
        })
    }

    async fn request(
        &self,
        subject: &str,
        mut msg: Outgoing,
        timeout: Duration,
    ) -> Result<Message> {
        validate_publish(subject)?;
        crate::observe::outgoing(subject, &mut msg);
        let mut req = async_nats::Request::new()
            .payload(msg.payload)
            .timeout(Some(timeout));
        if !msg.headers.is_empty() {
            req = req.headers(to_header_map(&msg.headers));
        }
        match self
            .inner
            .client
            .send_request(self.full(subject), req)
            .await
        {
            Ok(m) => Ok(self.convert(m)),
            Err(e) => Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    BusError::NoResponders(subject.to_string())
                }
                async_nats::RequestErrorKind::TimedOut => BusError::Timeout {
                    subject: subject.to_string(),
                    after: timeout,
                },
                _ => BusError::transport(e),
            }),
        }
    }

    async fn respond(&self, reply: &str, mut msg: Outgoing) -> Result<()> {
        validate_publish(reply)?;
        crate::observe::outgoing(reply, &mut msg);
        let client = &self.inner.client;
        bounded("a reply", self.inner.send_timeout, async move {
            let result = if msg.headers.is_empty() {
                client.publish(reply.to_string(), msg.payload).await
            } else {
                client
                    .publish_with_headers(
                        reply.to_string(),
                        to_header_map(&msg.headers),
                        msg.payload,
                    )
                    .await
            };
            result.map_err(BusError::transport)
        })
        .await
    }

    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<()> {
        for s in &spec.subjects {
            validate_filter(s)?;
        }
        let limit = |n: u64| {
            if n == 0 {
                -1
            } else {
                i64::try_from(n).unwrap_or(i64::MAX)
            }
        };
        let config = stream::Config {
            name: self.stream_name(&spec.name),
            subjects: spec.subjects.iter().map(|s| self.full(s)).collect(),
            retention: match spec.retention {
                Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
                Retention::Limits => stream::RetentionPolicy::Limits,
            },
            max_age: spec.max_age,
            max_messages: limit(spec.max_msgs),
            max_bytes: limit(spec.max_bytes),
            duplicate_window: spec.duplicate_window,
            storage: stream::StorageType::File,
            num_replicas: spec.replicas.max(self.inner.replicas).max(1),
            ..Default::default()
        };
        let probe = dead_letter_subject("probe");
        if spec.subjects.iter().any(|f| matches(f, &probe)) {
            self.inner
                .durable_dead_letters
                .store(true, Ordering::Relaxed);
        }
        let js = &self.inner.js;
        match js.get_stream(&config.name).await {
            // Already as configured: nothing to write (a process whose NATS
            // user may not update streams starts all the same).
            Ok(s) if same_settings(&s.cached_info().config, &config) => Ok(()),
            Ok(_) => js.update_stream(&config).await.map(|_| ()).map_err(|e| {
                BusError::Transport(format!(
                    "stream {} exists and cannot be brought to the configured settings (if this process's NATS user may not update streams, start a service that may first): {e}",
                    config.name
                ))
            }),
            Err(_) => match js.create_stream(config.clone()).await {
                Ok(_) => Ok(()),
                // Another process may have created it between our look and our create.
                Err(create) => js.update_stream(&config).await.map(|_| ()).map_err(|e| {
                    BusError::Transport(format!(
                        "creating stream {}: {create}; updating it: {e}",
                        config.name
                    ))
                }),
            },
        }
    }

    async fn publish_durable(&self, subject: &str, mut msg: Outgoing) -> Result<PublishAck> {
        validate_publish(subject)?;
        crate::observe::outgoing(subject, &mut msg);
        // On a cluster an acknowledgement lost to a node's death is common:
        // with an id the message can be sent again (crate::durable).
        if self.inner.replicas > 1 && msg.headers.get(MSG_ID).is_none() {
            msg.headers.insert(MSG_ID, crate::durable::fresh_id());
        }
        let has_id = msg.headers.get(MSG_ID).is_some();
        let headers = to_header_map(&msg.headers);
        let payload = msg.payload;
        crate::durable::with_retries(subject, has_id, crate::durable::RETRY_FOR, || {
            self.publish_once(subject, headers.clone(), payload.clone())
        })
        .await
    }

    async fn consumer(&self, stream: &str, spec: &ConsumerSpec) -> Result<Consumer> {
        validate_filter(&spec.filter)?;
        let name = self.stream_name(stream);
        let js_stream = self
            .inner
            .js
            .get_stream(&name)
            .await
            .map_err(|e| BusError::NotFound(format!("stream {name}: {e}")))?;
        let config = pull::Config {
            durable_name: Some(spec.durable.clone()),
            filter_subject: self.full(&spec.filter),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            // Redelivery is bounded by `Consumer::fetch`, which dead-letters a
            // message past `max_deliver` instead of letting the server drop it silently.
            max_deliver: -1,
            max_ack_pending: if spec.max_ack_pending == 0 {
                1000
            } else {
                i64::try_from(spec.max_ack_pending).unwrap_or(i64::MAX)
            },
            // Applies when the consumer is created here; an existing durable
            // keeps its place (get_or_create does not update it).
            deliver_policy: if spec.deliver_new {
                jetstream::consumer::DeliverPolicy::New
            } else {
                jetstream::consumer::DeliverPolicy::All
            },
            ..Default::default()
        };
        let consumer: jetstream::consumer::PullConsumer = js_stream
            .get_or_create_consumer(&spec.durable, config)
            .await
            .map_err(|e| BusError::Transport(format!("consumer {}: {e}", spec.durable)))?;
        let raw = NatsConsumer {
            consumer,
            client: self.inner.client.clone(),
            send_timeout: self.inner.send_timeout,
            prefix: self.inner.prefix.clone(),
            prefetch: spec.prefetch,
            confirm_acks: self.inner.replicas > 1,
            stream: tokio::sync::Mutex::new(None),
        };
        Ok(Consumer::new(
            Box::new(raw),
            stream,
            spec.clone(),
            Arc::new(self.clone()),
        ))
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetters> {
        Arc::new(self.clone())
    }

    async fn flush(&self) -> Result<()> {
        bounded("flush", self.inner.send_timeout, async {
            self.inner.client.flush().await.map_err(BusError::transport)
        })
        .await
    }

    fn prefix(&self) -> &str {
        &self.inner.prefix
    }
}

/// Whether a stream's settings are those `ensure_stream` would write.
fn same_settings(have: &stream::Config, want: &stream::Config) -> bool {
    let mut a = have.subjects.clone();
    let mut b = want.subjects.clone();
    a.sort();
    b.sort();
    a == b
        && have.retention == want.retention
        && have.max_age == want.max_age
        && have.max_messages == want.max_messages
        && have.max_bytes == want.max_bytes
        && have.duplicate_window == want.duplicate_window
        && have.storage == want.storage
        && have.num_replicas.max(1) == want.num_replicas.max(1)
}

impl NatsBus {
    /// One attempt at a durable publish (see [`crate::durable::Attempt`]).
    async fn publish_once(
        &self,
        subject: &str,
        headers: async_nats::HeaderMap,
        payload: bytes::Bytes,
    ) -> crate::durable::Attempt {
        use crate::durable::{Attempt, leader_away};
        use jetstream::context::PublishErrorKind as K;
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers);
        // Handing it to the client is bounded here (a send that timed out
        // never left); the acknowledgement by JetStream's own timeout.
        let sent = bounded(
            On("durable publish", subject),
            self.inner.send_timeout,
            async {
                self.inner
                    .js
                    .send_publish(self.full(subject), publish)
                    .await
                    .map_err(|e| publish_error(subject, e))
            },
        )
        .await;
        let pending = match sent {
            Ok(p) => p,
            Err(e) => return Attempt::NotStored(e),
        };
        match pending.await {
            Ok(ack) => {
                let stream = ack
                    .stream
                    .strip_prefix(&format!("{}_", self.inner.stream_prefix))
                    .unwrap_or(&ack.stream)
                    .to_string();
                Attempt::Stored(PublishAck {
                    stream,
                    sequence: ack.sequence,
                    duplicate: ack.duplicate,
                })
            }
            // Nobody answered: no stream stores the subject, or the stream's
            // leader is being elected. The stream list tells which.
            Err(e) if e.kind() == K::StreamNotFound => {
                use jetstream::context::GetStreamByNameErrorKind as G;
                match self.inner.js.stream_by_subject(self.full(subject)).await {
                    Err(l) if l.kind() == G::NotFound => {
                        Attempt::Failed(BusError::NoStream(subject.to_string()))
                    }
                    _ => Attempt::NotStored(BusError::Transport(format!(
                        "durable publish on {subject}: no stream leader answered (is one being elected?)"
                    ))),
                }
            }
            Err(e) if matches!(e.kind(), K::TimedOut | K::BrokenPipe) => {
                Attempt::MaybeStored(publish_error(subject, e))
            }
            Err(e) if leader_away(&e.to_string()) => Attempt::NotStored(publish_error(subject, e)),
            Err(e) => Attempt::Failed(publish_error(subject, e)),
        }
    }
}

fn publish_error(subject: &str, e: jetstream::context::PublishError) -> BusError {
    match e.kind() {
        jetstream::context::PublishErrorKind::StreamNotFound => {
            BusError::NoStream(subject.to_string())
        }
        _ => BusError::Transport(format!("durable publish on {subject}: {e}")),
    }
}

struct NatsConsumer {
    consumer: jetstream::consumer::PullConsumer,
    /// Its connection: no pull is sent while it is down.
    client: async_nats::Client,
    /// Bounds a no-wait pull (the client has no timer of its own for one).
    send_timeout: Duration,
    prefix: String,
    prefetch: usize,
    /// Whether an `Ack` waits for the server's confirmation (and is sent
    /// again without one): on a cluster, where an acknowledgement sent to a
    /// dying node is lost and the task would be delivered again.
    confirm_acks: bool,
    /// One pull subscription, refilled by the client as it drains: no new inbox
    /// and pull request per fetch.
    stream: tokio::sync::Mutex<Option<pull::Stream>>,
}

impl NatsConsumer {
    fn raw(&self, m: jetstream::Message) -> Result<RawDelivery> {
        let (delivered, stream_seq) = {
            let info = m.info().map_err(BusError::transport)?;
            (
                u64::try_from(info.delivered).unwrap_or(1),
                info.stream_sequence,
            )
        };
        let confirm = self
            .confirm_acks
            .then(|| {
                m.reply
                    .as_ref()
                    .map(|r| (self.client.clone(), r.to_string()))
            })
            .flatten();
        let (msg, acker) = m.split();
        Ok(RawDelivery {
            message: convert(&self.prefix, msg),
            delivered,
            stream_seq,
            acker: Box::new(NatsAcker {
                acker,
                timeout: self.send_timeout,
                confirm,
            }),
        })
    }

    /// Takes what is there now, without waiting. Bounded by `send_timeout`:
    /// the server's "no messages" answer never comes while it is unreachable
    /// (a message it sent meanwhile returns after `ack_wait`).
    async fn take_now(&self, max: usize, out: &mut Vec<RawDelivery>) -> Result<()> {
        let mut taken = Vec::new();
        let pulled = bounded("a pull", self.send_timeout, async {
            let mut batch = self
                .consumer
                .fetch()
                .max_messages(max)
                .messages()
                .await
                .map_err(BusError::transport)?;
            while let Some(m) = batch.next().await {
                taken.push(self.raw(m.map_err(BusError::transport)?)?);
            }
            Ok(())
        })
        .await;
        let got = !taken.is_empty();
        out.append(&mut taken);
        match pulled {
            // What arrived before the server went quiet is handed out.
            Err(_) if got => Ok(()),
            other => other,
        }
    }

    /// `pull`, given up as soon as the connection is lost: nothing can arrive
    /// until it is back, and the client would wait for its own timer (the
    /// pull's expiry and 5 s more). A message the server sent just before is
    /// delivered again after `ack_wait`.
    async fn while_connected(
        &self,
        pull: impl std::future::Future<Output = Result<Vec<RawDelivery>>>,
    ) -> Result<Vec<RawDelivery>> {
        let lost = async {
            while self.client.connection_state() == async_nats::connection::State::Connected {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            pulled = pull => pulled,
            _ = lost => Err(BusError::Transport(
                "the connection to NATS was lost during a pull".to_string(),
            )),
        }
    }

    /// Pulls at most what is asked for: what is there now; else waits for one
    /// (a pull of one returns as soon as it arrives) and hands it out at once:
    /// the caller starts on it a round trip sooner, and its next fetch takes
    /// what else arrived meanwhile.
    async fn fetch_exact(&self, max: usize, wait: Duration) -> Result<Vec<RawDelivery>> {
        let mut out = Vec::new();
        self.take_now(max, &mut out).await?;
        if !out.is_empty() || wait < Duration::from_millis(1) {
            return Ok(out);
        }
        let mut batch = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(BusError::transport)?;
        while let Some(m) = batch.next().await {
            out.push(self.raw(m.map_err(BusError::transport)?)?);
        }
        Ok(out)
    }
}

#[async_trait]
impl RawConsumer for NatsConsumer {
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<RawDelivery>> {
        // A pull queued while the connection is down would only wait for its
        // timeout (and reach the server after the reconnection, for nobody).
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(BusError::Transport(
                "not connected to NATS (reconnecting): nothing pulled".to_string(),
            ));
        }
        if self.prefetch == 0 {
            return self.while_connected(self.fetch_exact(max, wait)).await;
        }
        let mut guard = self.stream.lock().await;
        let stream = match guard.as_mut() {
            Some(s) => s,
            None => guard.insert(
                self.consumer
                    .stream()
                    .max_messages_per_batch(self.prefetch)
                    // A pull request lost with a node (or a consumer leader
                    // that moved) shows as missed heartbeats within ~2 s: the
                    // subscription is then reopened on the new leader.
                    .expires(Duration::from_secs(5))
                    .heartbeat(Duration::from_secs(1))
                    .messages()
                    .await
                    .map_err(BusError::transport)?,
            ),
        };
        let mut out = Vec::new();
        match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Ok(out),
            Ok(Some(Ok(m))) => out.push(self.raw(m)?),
            Ok(Some(Err(e))) => {
                *guard = None;
                return Err(BusError::transport(e));
            }
            Ok(None) => {
                *guard = None;
                return Ok(out);
            }
        }
        while out.len() < max {
            match futures::FutureExt::now_or_never(stream.next()) {
                Some(Some(Ok(m))) => out.push(self.raw(m)?),
                Some(Some(Err(e))) => {
                    tracing::warn!(error = %e, "pull subscription failed; it will be reopened");
                    *guard = None;
                    break;
                }
                _ => break,
            }
        }
        Ok(out)
    }
}

/// A consumer let go (its service stopping, a partition moving to another
/// process) hands back what its pull subscription holds but nobody took:
/// delivered again at once, not after `ack_wait`.
impl Drop for NatsConsumer {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.get_mut().take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            // What the open pull request has on the wire lands in the
            // subscription's buffer meanwhile; then the buffer is handed
            // back once, without waiting for more (waiting would take back
            // the nak'd messages and hand them back again, each time
            // counting toward `max_deliver`).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut handed_back = 0usize;
            while let Some(Some(Ok(m))) = futures::FutureExt::now_or_never(stream.next()) {
                if m.ack_with(jetstream::AckKind::Nak(None)).await.is_ok() {
                    handed_back += 1;
                }
            }
            if handed_back > 0 {
                tracing::debug!(
                    handed_back,
                    "a consumer let go handed back what it had pulled"
                );
            }
        });
    }
}

struct NatsAcker {
    acker: jetstream::message::Acker,
    /// Bounds a settle.
    timeout: Duration,
    /// The connection and the message's reply subject, when an `Ack` is
    /// confirmed ([`NatsConsumer::confirm_acks`]).
    confirm: Option<(async_nats::Client, String)>,
}

/// Tries of a confirmed acknowledgement, each waiting this long for the answer.
const CONFIRM_TRIES: u32 = 4;
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

#[async_trait]
impl Acker for NatsAcker {
    async fn settle(&self, how: Settle) -> Result<()> {
        if let (Settle::Ack, Some((client, reply))) = (&how, &self.confirm) {
            // The consumer's leader answers an acknowledgement that has a
            // reply subject once it has taken it; the connection's shared
            // inbox carries the answer (no subscription per message).
            let mut last = String::new();
            for _ in 0..CONFIRM_TRIES {
                let req = async_nats::Request::new()
                    .payload(bytes::Bytes::from_static(b"+ACK"))
                    .timeout(Some(CONFIRM_WAIT));
                match client.send_request(reply.clone(), req).await {
                    Ok(_) => return Ok(()),
                    Err(e) => {
                        last = e.to_string();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            return Err(BusError::Transport(format!(
                "acknowledging a message: no confirmation after {CONFIRM_TRIES} tries ({last}); it will be delivered again"
            )));
        }
        let kind = match how {
            Settle::Ack => jetstream::AckKind::Ack,
            Settle::Nak(delay) => jetstream::AckKind::Nak(delay),
            Settle::InProgress => jetstream::AckKind::Progress,
            Settle::Term => jetstream::AckKind::Term,
        };
        bounded("an acknowledgement", self.timeout, async {
            self.acker.ack_with(kind).await.map_err(BusError::transport)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_credentials() {
        assert_eq!(
            redact_url("nats://orchestrator:s3cret@nats:4222"),
            "nats://***@nats:4222"
        );
        assert_eq!(
            redact_url("tls://tok3n@a:4222,nats://b:4222"),
            "tls://***@a:4222,nats://b:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("u:p@host:4222"), "***@host:4222");
    }

    #[test]
    fn credentials_in_the_url_are_taken_out_of_it() {
        let (plain, auth) =
            credentials_in_url("nats://orchestrator:p%40ss@nats:4222,nats://b:4222");
        assert_eq!(plain, "nats://nats:4222,nats://b:4222");
        assert_eq!(
            auth,
            Some(NatsAuth::UserPassword {
                user: "orchestrator".into(),
                password: "p@ss".into()
            })
        );
        let (plain, auth) = credentials_in_url("tls://s3cr3t@nats:4222");
        assert_eq!(plain, "tls://nats:4222");
        assert_eq!(auth, Some(NatsAuth::Token("s3cr3t".into())));
        assert_eq!(
            credentials_in_url("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".to_string(), None)
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn a_user_gets_inboxes_of_its_own_and_secrets_stay_out_of_debug() {
        let opts = NatsOptions {
            auth: NatsAuth::UserPassword {
                user: "agent".into(),
                password: "pw-9".into(),
            },
            ..Default::default()
        };
        assert_eq!(inbox_prefix(&opts).as_deref(), Some("_INBOX.agent"));
        assert!(!format!("{opts:?}").contains("pw-9"));
        assert_eq!(inbox_prefix(&NatsOptions::default()), None);
        let token = NatsOptions {
            auth: NatsAuth::Token("tok-9".into()),
            inbox_prefix: Some("_INBOX.x".into()),
            ..Default::default()
        };
        assert_eq!(inbox_prefix(&token).as_deref(), Some("_INBOX.x"));
        assert!(!format!("{token:?}").contains("tok-9"));
    }
}
