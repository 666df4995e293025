//! The NATS implementation: core NATS for events and request/reply, JetStream
//! for streams and shared durable pull consumers.

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
use crate::message::{Headers, Message, Outgoing};
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
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            prefix: "concierto.".to_string(),
            client_name: "concierto".to_string(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

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
    /// Set once this connection has declared a stream storing dead letters; until
    /// then dead letters go out on core NATS (a stream made by another process
    /// still stores them).
    durable_dead_letters: AtomicBool,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`).
    pub async fn connect(url: &str, opts: NatsOptions) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name(&opts.client_name)
            .connection_timeout(opts.connect_timeout)
            .connect(url)
            .await
            .map_err(|e| BusError::Transport(format!("connecting to {url}: {e}")))?;
        Ok(Self::from_client(client, &opts.prefix))
    }

    /// Uses an existing connection.
    pub fn from_client(client: async_nats::Client, prefix: &str) -> Self {
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
                durable_dead_letters: AtomicBool::new(false),
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
    async fn publish(&self, subject: &str, mut msg: Outgoing) -> Result<()> {
        validate_publish(subject)?;
        crate::observe::outgoing(subject, &mut msg);
        let full = self.full(subject);
        let result = if msg.headers.is_empty() {
            self.inner.client.publish(full, msg.payload).await
        } else {
            self.inner
                .client
                .publish_with_headers(full, to_header_map(&msg.headers), msg.payload)
                .await
        };
        result.map_err(BusError::transport)
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription> {
        validate_filter(subject)?;
        let sub = self
            .inner
            .client
            .subscribe(self.full(subject))
            .await
            .map_err(BusError::transport)?;
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
        let result = if msg.headers.is_empty() {
            client.publish(reply.to_string(), msg.payload).await
        } else {
            client
                .publish_with_headers(reply.to_string(), to_header_map(&msg.headers), msg.payload)
                .await
        };
        result.map_err(BusError::transport)
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
            Ok(_) => js.update_stream(&config).await.map(|_| ()).map_err(|e| {
                BusError::Transport(format!(
                    "stream {} exists and cannot be brought to the configured settings: {e}",
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
        let publish = jetstream::message::PublishMessage::build()
            .payload(msg.payload)
            .headers(to_header_map(&msg.headers));
        let pending = self
            .inner
            .js
            .send_publish(self.full(subject), publish)
            .await
            .map_err(|e| publish_error(subject, e))?;
        let ack = pending.await.map_err(|e| publish_error(subject, e))?;
        let stream = ack
            .stream
            .strip_prefix(&format!("{}_", self.inner.stream_prefix))
            .unwrap_or(&ack.stream)
            .to_string();
        Ok(PublishAck {
            stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
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
            ..Default::default()
        };
        let consumer: jetstream::consumer::PullConsumer = js_stream
            .get_or_create_consumer(&spec.durable, config)
            .await
            .map_err(|e| BusError::Transport(format!("consumer {}: {e}", spec.durable)))?;
        let raw = NatsConsumer {
            consumer,
            prefix: self.inner.prefix.clone(),
            prefetch: spec.prefetch,
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
        self.inner.client.flush().await.map_err(BusError::transport)
    }

    fn prefix(&self) -> &str {
        &self.inner.prefix
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
    prefix: String,
    prefetch: usize,
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
        let (msg, acker) = m.split();
        Ok(RawDelivery {
            message: convert(&self.prefix, msg),
            delivered,
            stream_seq,
            acker: Box::new(NatsAcker(acker)),
        })
    }

    /// Takes what is there now, without waiting.
    async fn take_now(&self, max: usize, out: &mut Vec<RawDelivery>) -> Result<()> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(BusError::transport)?;
        while let Some(m) = batch.next().await {
            out.push(self.raw(m.map_err(BusError::transport)?)?);
        }
        Ok(())
    }

    /// Pulls exactly what is asked for: what is there now; else waits for one
    /// (a pull of one returns as soon as it arrives), then takes what else is there.
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
        if !out.is_empty() && max > 1 {
            self.take_now(max - 1, &mut out).await?;
        }
        Ok(out)
    }
}

#[async_trait]
impl RawConsumer for NatsConsumer {
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<RawDelivery>> {
        if self.prefetch == 0 {
            return self.fetch_exact(max, wait).await;
        }
        let mut guard = self.stream.lock().await;
        let stream = match guard.as_mut() {
            Some(s) => s,
            None => guard.insert(
                self.consumer
                    .stream()
                    .max_messages_per_batch(self.prefetch)
                    .expires(Duration::from_secs(10))
                    .heartbeat(Duration::from_secs(5))
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

struct NatsAcker(jetstream::message::Acker);

#[async_trait]
impl Acker for NatsAcker {
    async fn settle(&self, how: Settle) -> Result<()> {
        let kind = match how {
            Settle::Ack => jetstream::AckKind::Ack,
            Settle::Nak(delay) => jetstream::AckKind::Nak(delay),
            Settle::InProgress => jetstream::AckKind::Progress,
            Settle::Term => jetstream::AckKind::Term,
        };
        self.0.ack_with(kind).await.map_err(BusError::transport)
    }
}
