//! The in-process bus: the same subject syntax, queue groups, request/reply and
//! durable-consumer semantics as NATS, without a server. Time is tokio's, so
//! tests can pause it. Nothing survives the process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use concierto_proto::v1::DeadLetter;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::bus::{
    Acker, Bus, Consumer, ConsumerSpec, DeadLetters, PublishAck, RawConsumer, RawDelivery,
    Retention, Settle, StreamSpec, Subscription, dead_letter_message,
};
use crate::error::{BusError, Result};
use crate::message::{Headers, MSG_ID, Message, Outgoing};
use crate::subject::{matches, validate_filter, validate_publish};

/// Messages a subscriber may have waiting before new ones are dropped (as a
/// NATS server drops messages for a slow consumer).
pub const SUBSCRIBER_CAPACITY: usize = 65_536;

/// The in-process bus. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    subs: RwLock<Vec<Sub>>,
    next_id: AtomicU64,
    round_robin: AtomicU64,
    dropped: AtomicU64,
    streams: Mutex<HashMap<String, StreamState>>,
    notify: Notify,
    leases: Arc<crate::lease::MemoryLeases>,
    replicas: Mutex<HashMap<String, Arc<crate::replica::MemoryReplica>>>,
}

struct Sub {
    id: u64,
    filter: String,
    group: Option<String>,
    tx: mpsc::Sender<Message>,
}

struct Stored {
    subject: String,
    headers: Headers,
    payload: bytes::Bytes,
    at: Instant,
    size: u64,
}

struct StreamState {
    spec: StreamSpec,
    msgs: BTreeMap<u64, Stored>,
    bytes: u64,
    next_seq: u64,
    dedup: HashMap<String, u64>,
    dedup_order: VecDeque<(Instant, String)>,
    consumers: HashMap<String, ConsumerState>,
}

struct ConsumerState {
    spec: ConsumerSpec,
    /// Next sequence never delivered to this consumer.
    cursor: u64,
    /// Delivered, not settled: when each may be delivered again.
    pending: BTreeMap<u64, Instant>,
    /// Deliveries so far per unsettled sequence.
    delivered: HashMap<u64, u64>,
}

impl Default for EmbeddedBus {
    fn default() -> Self {
        Self::new("concierto.")
    }
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBus {
    /// A new, empty bus. `prefix` is only reported (subjects in process need none).
    pub fn new(prefix: impl Into<String>) -> Self {
        EmbeddedBus {
            inner: Arc::new(Inner {
                prefix: prefix.into(),
                subs: RwLock::new(Vec::new()),
                next_id: AtomicU64::new(1),
                round_robin: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                streams: Mutex::new(HashMap::new()),
                notify: Notify::new(),
                leases: Arc::default(),
                replicas: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Messages dropped because a subscriber was too slow.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn add_sub(&self, filter: &str, group: Option<&str>) -> Result<Subscription> {
        validate_filter(filter)?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.write_subs().push(Sub {
            id,
            filter: filter.to_string(),
            group: group.map(str::to_string),
            tx,
        });
        Ok(Subscription {
            inner: Box::pin(ReceiverStream::new(rx)),
            subject: filter.to_string(),
            dead_letters: Arc::new(self.clone()),
        })
    }
}

impl Inner {
    fn write_subs(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Sub>> {
        self.subs.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read_subs(&self) -> std::sync::RwLockReadGuard<'_, Vec<Sub>> {
        self.subs.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, StreamState>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers to core subscribers; returns how many received it.
    /// Stores `msg` in the stream covering `subject`, if one does.
    fn store(&self, subject: &str, msg: &Outgoing) -> Option<PublishAck> {
        let mut streams = self.lock_streams();
        let stream = streams.values_mut().find(|s| s.covers(subject))?;
        Some(stream.store(subject, msg, Instant::now()))
    }

    fn route(&self, msg: Message) -> usize {
        let mut delivered = 0;
        let mut closed = Vec::new();
        {
            let subs = self.read_subs();
            let mut groups: Vec<(&str, Vec<&Sub>)> = Vec::new();
            for sub in subs.iter() {
                if sub.tx.is_closed() {
                    closed.push(sub.id);
                    continue;
                }
                if !matches(&sub.filter, &msg.subject) {
                    continue;
                }
                match &sub.group {
                    None => {
                        delivered += usize::from(self.offer(sub, msg.clone()));
                    }
                    Some(g) => match groups.iter_mut().find(|(name, _)| name == g) {
                        Some((_, members)) => members.push(sub),
                        None => groups.push((g, vec![sub])),
                    },
                }
            }
            for (_, members) in groups {
                let n = self.round_robin.fetch_add(1, Ordering::Relaxed);
                let pick = usize::try_from(n).unwrap_or(0) % members.len();
                delivered += usize::from(self.offer(members[pick], msg.clone()));
            }
        }
        if !closed.is_empty() {
            self.write_subs().retain(|s| !closed.contains(&s.id));
        }
        delivered
    }

    fn offer(&self, sub: &Sub, msg: Message) -> bool {
        match sub.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(m)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subject = %m.subject, filter = %sub.filter, "slow subscriber: message dropped");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn has_listener(&self, subject: &str) -> bool {
        self.read_subs()
            .iter()
            .any(|s| !s.tx.is_closed() && matches(&s.filter, subject))
    }
}

impl StreamState {
    fn covers(&self, subject: &str) -> bool {
        self.spec.subjects.iter().any(|f| matches(f, subject))
    }

    fn store(&mut self, subject: &str, msg: &Outgoing, now: Instant) -> PublishAck {
        // Forget message ids older than the duplicate window.
        while let Some((at, _)) = self.dedup_order.front() {
            if now.duration_since(*at) <= self.spec.duplicate_window {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                self.dedup.remove(&id);
            }
        }
        if let Some(id) = msg.headers.get(MSG_ID)
            && let Some(&seq) = self.dedup.get(id)
        {
            return PublishAck {
                stream: self.spec.name.clone(),
                sequence: seq,
                duplicate: true,
            };
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(id) = msg.headers.get(MSG_ID) {
            self.dedup.insert(id.to_string(), seq);
            self.dedup_order.push_back((now, id.to_string()));
        }
        let size = (msg.payload.len() + subject.len()) as u64;
        self.bytes += size;
        self.msgs.insert(
            seq,
            Stored {
                subject: subject.to_string(),
                headers: msg.headers.clone(),
                payload: msg.payload.clone(),
                at: now,
                size,
            },
        );
        self.enforce_limits(now);
        PublishAck {
            stream: self.spec.name.clone(),
            sequence: seq,
            duplicate: false,
        }
    }

    fn enforce_limits(&mut self, now: Instant) {
        loop {
            let Some((&seq, oldest)) = self.msgs.iter().next() else {
                return;
            };
            let too_old =
                !self.spec.max_age.is_zero() && now.duration_since(oldest.at) > self.spec.max_age;
            let too_many = self.spec.max_msgs > 0 && self.msgs.len() as u64 > self.spec.max_msgs;
            let too_big = self.spec.max_bytes > 0 && self.bytes > self.spec.max_bytes;
            if !(too_old || too_many || too_big) {
                return;
            }
            self.remove(seq);
        }
    }

    fn remove(&mut self, seq: u64) {
        if let Some(m) = self.msgs.remove(&seq) {
            self.bytes -= m.size;
        }
        for c in self.consumers.values_mut() {
            c.pending.remove(&seq);
            c.delivered.remove(&seq);
        }
    }

    /// Takes up to `max` deliveries for `durable`: redeliveries first, then new.
    fn take(&mut self, durable: &str, max: usize, now: Instant) -> Vec<(u64, u64, Message)> {
        let Some(c) = self.consumers.get_mut(durable) else {
            return Vec::new();
        };
        let mut picked: Vec<u64> = c
            .pending
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|(seq, _)| *seq)
            .take(max)
            .collect();
        if picked.len() < max {
            let start = c.cursor;
            for (&seq, m) in self.msgs.range(start..) {
                c.cursor = seq + 1;
                if matches(&c.spec.filter, &m.subject) {
                    picked.push(seq);
                    if picked.len() == max {
                        break;
                    }
                }
            }
            if picked.len() < max {
                c.cursor = self.next_seq;
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for seq in picked {
            let Some(m) = self.msgs.get(&seq) else {
                c.pending.remove(&seq);
                continue;
            };
            c.pending.insert(seq, now + c.spec.ack_wait);
            let n = c.delivered.entry(seq).or_insert(0);
            *n += 1;
            out.push((
                seq,
                *n,
                Message {
                    subject: m.subject.clone(),
                    reply: None,
                    headers: m.headers.clone(),
                    payload: m.payload.clone(),
                },
            ));
        }
        out
    }

    fn earliest_due(&self, durable: &str) -> Option<Instant> {
        self.consumers
            .get(durable)
            .and_then(|c| c.pending.values().min().copied())
    }

    fn settle(&mut self, durable: &str, seq: u64, how: Settle, now: Instant) {
        let retention = self.spec.retention;
        let Some(c) = self.consumers.get_mut(durable) else {
            return;
        };
        if !c.pending.contains_key(&seq) {
            return; // already settled, or removed by limits
        }
        match how {
            Settle::Ack | Settle::Term => {
                c.pending.remove(&seq);
                c.delivered.remove(&seq);
                if retention == Retention::WorkQueue {
                    self.remove(seq);
                }
            }
            Settle::Nak(delay) => {
                c.pending.insert(seq, now + delay.unwrap_or(Duration::ZERO));
            }
            Settle::InProgress => {
                let wait = c.spec.ack_wait;
                c.pending.insert(seq, now + wait);
            }
        }
    }
}

#[async_trait]
impl DeadLetters for EmbeddedBus {
    async fn dead_letter(&self, letter: DeadLetter) -> Result<()> {
        let (subject, out) = dead_letter_message(&letter);
        match self.publish_durable(&subject, out.clone()).await {
            Ok(_) => Ok(()),
            Err(BusError::NoStream(_)) => self.publish(&subject, out).await,
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn leases(&self) -> Result<Arc<dyn crate::lease::LeaseStore>> {
        Ok(self.inner.leases.clone())
    }

    fn in_process(&self) -> bool {
        true
    }

    async fn replica(
        &self,
        name: &str,
        _replicas: usize,
    ) -> Result<Arc<dyn crate::replica::ReplicaStore>> {
        let mut all = match self.inner.replicas.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        let r = all.entry(name.to_string()).or_default().clone();
        Ok(r)
    }

    async fn stream_messages(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, Message)>> {
        let streams = self.inner.lock_streams();
        let s = streams
            .get(stream)
            .ok_or_else(|| BusError::NotFound(format!("stream {stream}")))?;
        Ok(s.msgs
            .range(from..)
            .take(max)
            .map(|(seq, m)| {
                (
                    *seq,
                    Message {
                        subject: m.subject.clone(),
                        reply: None,
                        headers: m.headers.clone(),
                        payload: m.payload.clone(),
                    },
                )
            })
            .collect())
    }

    async fn delete_stream_message(&self, stream: &str, seq: u64) -> Result<bool> {
        let mut streams = self.inner.lock_streams();
        let s = streams
            .get_mut(stream)
            .ok_or_else(|| BusError::NotFound(format!("stream {stream}")))?;
        match s.msgs.remove(&seq) {
            Some(m) => {
                s.bytes = s.bytes.saturating_sub(m.size);
                for c in s.consumers.values_mut() {
                    c.pending.remove(&seq);
                    c.delivered.remove(&seq);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn publish(&self, subject: &str, mut msg: Outgoing) -> Result<()> {
        validate_publish(subject)?;
        crate::observe::outgoing(subject, &mut msg);
        // As with NATS, a stream keeps what is published on its subjects even
        // without a JetStream publish (e.g. run events for the tracker's
        // durable consumer); the publisher just does not wait for the ack.
        if self
            .inner
            .store(subject, &msg)
            .is_some_and(|a| !a.duplicate)
        {
            self.inner.notify.notify_waiters();
        }
        self.inner.route(Message {
            subject: subject.to_string(),
            reply: None,
            headers: msg.headers,
            payload: msg.payload,
        });
        Ok(())
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription> {
        self.add_sub(subject, None)
    }

    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription> {
        self.add_sub(subject, Some(group))
    }

    async fn request(
        &self,
        subject: &str,
        mut msg: Outgoing,
        timeout: Duration,
    ) -> Result<Message> {
        validate_publish(subject)?;
        crate::observe::outgoing(subject, &mut msg);
        if !self.inner.has_listener(subject) {
            return Err(BusError::NoResponders(subject.to_string()));
        }
        let inbox = format!(
            "_INBOX.{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let mut replies = self.add_sub(&inbox, None)?;
        let delivered = self.inner.route(Message {
            subject: subject.to_string(),
            reply: Some(inbox),
            headers: msg.headers,
            payload: msg.payload,
        });
        if delivered == 0 {
            return Err(BusError::NoResponders(subject.to_string()));
        }
        match tokio::time::timeout(timeout, replies.next()).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(BusError::Closed),
            Err(_) => Err(BusError::Timeout {
                subject: subject.to_string(),
                after: timeout,
            }),
        }
    }

    async fn respond(&self, reply: &str, msg: Outgoing) -> Result<()> {
        self.publish(reply, msg).await
    }

    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<()> {
        for s in &spec.subjects {
            validate_filter(s)?;
        }
        let mut streams = self.inner.lock_streams();
        match streams.get_mut(&spec.name) {
            Some(existing) => {
                existing.spec = spec.clone();
                existing.enforce_limits(Instant::now());
            }
            None => {
                streams.insert(
                    spec.name.clone(),
                    StreamState {
                        spec: spec.clone(),
                        msgs: BTreeMap::new(),
                        bytes: 0,
                        next_seq: 1,
                        dedup: HashMap::new(),
                        dedup_order: VecDeque::new(),
                        consumers: HashMap::new(),
                    },
                );
            }
        }
        Ok(())
    }

    async fn publish_durable(&self, subject: &str, mut msg: Outgoing) -> Result<PublishAck> {
        validate_publish(subject)?;
        crate::observe::outgoing(subject, &mut msg);
        let ack = self
            .inner
            .store(subject, &msg)
            .ok_or_else(|| BusError::NoStream(subject.to_string()))?;
        if !ack.duplicate {
            self.inner.notify.notify_waiters();
            self.inner.route(Message {
                subject: subject.to_string(),
                reply: None,
                headers: msg.headers,
                payload: msg.payload,
            });
        }
        Ok(ack)
    }

    async fn consumer(&self, stream: &str, spec: &ConsumerSpec) -> Result<Consumer> {
        validate_filter(&spec.filter)?;
        {
            let mut streams = self.inner.lock_streams();
            let s = streams
                .get_mut(stream)
                .ok_or_else(|| BusError::NotFound(format!("stream {stream}")))?;
            match s.consumers.get_mut(&spec.durable) {
                Some(c) => c.spec = spec.clone(),
                None => {
                    // Created now: from the oldest message kept, or (deliver_new)
                    // from the next one stored.
                    let cursor = if spec.deliver_new { s.next_seq } else { 1 };
                    s.consumers.insert(
                        spec.durable.clone(),
                        ConsumerState {
                            spec: spec.clone(),
                            cursor,
                            pending: BTreeMap::new(),
                            delivered: HashMap::new(),
                        },
                    );
                }
            }
        }
        let raw = EmbeddedConsumer {
            bus: self.clone(),
            stream: stream.to_string(),
            durable: spec.durable.clone(),
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
        Ok(())
    }

    fn prefix(&self) -> &str {
        &self.inner.prefix
    }
}

struct EmbeddedConsumer {
    bus: EmbeddedBus,
    stream: String,
    durable: String,
}

#[async_trait]
impl RawConsumer for EmbeddedConsumer {
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<RawDelivery>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.bus.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (taken, due) = {
                let mut streams = self.bus.inner.lock_streams();
                let s = streams
                    .get_mut(&self.stream)
                    .ok_or_else(|| BusError::NotFound(format!("stream {}", self.stream)))?;
                let now = Instant::now();
                (
                    s.take(&self.durable, max, now),
                    s.earliest_due(&self.durable),
                )
            };
            if !taken.is_empty() {
                return Ok(taken
                    .into_iter()
                    .map(|(seq, delivered, message)| RawDelivery {
                        message,
                        delivered,
                        stream_seq: seq,
                        acker: Box::new(EmbeddedAcker {
                            bus: self.bus.clone(),
                            stream: self.stream.clone(),
                            durable: self.durable.clone(),
                            seq,
                        }),
                    })
                    .collect());
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            let wake = due.map_or(deadline, |d| d.min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

struct EmbeddedAcker {
    bus: EmbeddedBus,
    stream: String,
    durable: String,
    seq: u64,
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn settle(&self, how: Settle) -> Result<()> {
        {
            let mut streams = self.bus.inner.lock_streams();
            if let Some(s) = streams.get_mut(&self.stream) {
                s.settle(&self.durable, self.seq, how, Instant::now());
            }
        }
        if matches!(how, Settle::Nak(_)) {
            self.bus.inner.notify.notify_waiters();
        }
        Ok(())
    }
}
