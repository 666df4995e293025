//! Replicas: a revisioned key/value bucket a service writes its state
//! through to, so that another process with an empty data folder can take
//! its place (DESIGN.md section 3, "partitioned orchestrators").
//!
//! On NATS a replica is a JetStream KV bucket `<PREFIX>_<NAME>` (stream
//! `KV_<PREFIX>_<NAME>`, made here by hand as NATS 2.9 needs, history 1, file
//! storage, `server.bus.replicas` copies); on the embedded bus a map in
//! memory. Writes are batches of puts and deletes published concurrently,
//! every acknowledgement awaited; reading the whole bucket walks its stream
//! once with an ephemeral ordered consumer (last message per key), never one
//! `get` per key.
//!
//! A writer that owns a replica for a while (an orchestrator holding a
//! partition's lease) writes with `put_many_after(entries, Some(seq))`: the
//! first message expects the stream's last sequence to be `seq` (what the
//! writer loaded or last wrote), each later one expects the writer's
//! previous message id, so a process that lost the replica lands nothing
//! once its successor has written.
//!
//! ```text
//!  put_many([(key, Some(v)) | (key, None)]) ──▶ $KV.<bucket>.<key>   (≤ 1,024 in flight)
//!  load_all() ◀── ordered consumer, deliver last per subject, until pending = 0
//! ```
//!
//! Values above [`CHUNK_BYTES`] (NATS refuses messages above `max_payload`,
//! 1 MiB by default) are split: the chunks go first under `_c.<nonce>.<i>`,
//! then the key gets a small head naming them, then the chunks of the value
//! it replaced are deleted. A write cut half-way never leaves a head naming
//! missing or newer chunks: until the new head is stored, the old head and
//! its chunks stand.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::error::{BusError, Result};

/// One write: a value for a key, or `None` to delete it.
pub type ReplicaEntry = (String, Option<Vec<u8>>);

/// A revisioned key/value bucket holding a copy of a service's state.
#[async_trait]
pub trait ReplicaStore: Send + Sync {
    /// Writes every entry (concurrently, every acknowledgement awaited) and
    /// returns the bucket's sequence after them. Keys must pass [`valid_key`].
    async fn put_many(&self, entries: Vec<ReplicaEntry>) -> Result<u64> {
        self.put_many_after(entries, None).await
    }
    /// [`put_many`](Self::put_many), fenced: with `after`, each write lands
    /// only if the bucket's sequence is still the one the writes before it
    /// left (the first: `after`), so nothing lands once another writer has
    /// written; the first write that finds another sequence fails with
    /// [`BusError::Conflict`]. A failed call may have written some entries:
    /// the bucket's sequence is then unknown to the caller.
    async fn put_many_after(&self, entries: Vec<ReplicaEntry>, after: Option<u64>) -> Result<u64>;
    /// Every key and value, in no particular order.
    async fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// The bucket's sequence now: it changes with every write, 0 when the
    /// bucket was never written.
    async fn last_seq(&self) -> Result<u64>;
    /// The value of one key.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
}

/// Values longer than this are split into chunks of this size.
pub const CHUNK_BYTES: usize = 900 * 1024;

/// Publishes in flight at once in a [`ReplicaStore::put_many`].
pub const MAX_IN_FLIGHT: usize = 1024;

/// Keys under this prefix are the chunks of split values.
const CHUNK_PREFIX: &str = "_c.";

/// Whether `key` can name an entry: non-empty, tokens of `[-/_=a-zA-Z0-9]`
/// separated by single dots, at most 1,024 characters, not under `_c.`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with(CHUNK_PREFIX)
        && key.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'='))
        })
}

fn check_keys(entries: &[ReplicaEntry]) -> Result<()> {
    match entries.iter().find(|(k, _)| !valid_key(k)) {
        Some((k, _)) => Err(BusError::Invalid(format!(
            "replica key {k:?} is not valid (tokens of letters, digits, - / _ =, separated by dots)"
        ))),
        None => Ok(()),
    }
}

/// The embedded bus's replica: a map in memory.
#[derive(Debug, Default)]
pub struct MemoryReplica {
    state: Mutex<(BTreeMap<String, Vec<u8>>, u64)>,
}

impl MemoryReplica {
    fn with<T>(&self, f: impl FnOnce(&mut (BTreeMap<String, Vec<u8>>, u64)) -> T) -> T {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

#[async_trait]
impl ReplicaStore for MemoryReplica {
    async fn put_many_after(&self, entries: Vec<ReplicaEntry>, after: Option<u64>) -> Result<u64> {
        check_keys(&entries)?;
        self.with(|(map, seq)| {
            if let Some(after) = after
                && *seq != after
            {
                return Err(BusError::Conflict(format!(
                    "the replica is at sequence {seq}, this writer expected {after}"
                )));
            }
            for (k, v) in entries {
                *seq += 1;
                match v {
                    Some(v) => map.insert(k, v),
                    None => map.remove(&k),
                };
            }
            Ok(*seq)
        })
    }

    async fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self.with(|(map, _)| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }

    async fn last_seq(&self) -> Result<u64> {
        Ok(self.with(|(_, seq)| *seq))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.with(|(map, _)| map.get(key).cloned()))
    }
}

/// How a value is stored on NATS: its first byte says which.
const INLINE: u8 = 0;
const SPLIT: u8 = 1;

/// Where a split value's chunks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    nonce: u64,
    chunks: u32,
    len: u64,
}

impl Head {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![SPLIT];
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.chunks.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out
    }

    fn decode(body: &[u8]) -> Option<Head> {
        if body.len() != 21 || body[0] != SPLIT {
            return None;
        }
        Some(Head {
            nonce: u64::from_be_bytes(body[1..9].try_into().ok()?),
            chunks: u32::from_be_bytes(body[9..13].try_into().ok()?),
            len: u64::from_be_bytes(body[13..21].try_into().ok()?),
        })
    }

    fn chunk_key(&self, i: u32) -> String {
        format!("{CHUNK_PREFIX}{:016x}.{i}", self.nonce)
    }
}

/// The NATS replica: a JetStream KV bucket written with raw publishes.
pub(crate) struct NatsReplica {
    js: async_nats::jetstream::Context,
    stream: String,
    /// `$KV.<bucket>.`
    subject_prefix: String,
    /// Split values known to this process (from loads and writes), so that
    /// the chunks of a replaced value are deleted.
    split: Mutex<HashMap<String, Head>>,
    nonces: AtomicU64,
    /// This writer's id (random) and count of messages sent: message ids.
    writer: u64,
    sent: AtomicU64,
}

/// What the next write of a fenced [`ReplicaStore::put_many_after`] expects
/// to find last in the bucket's stream. A sequence alone would not do for
/// writes in flight together: after `n` foreign messages, the `n`-th of a
/// batch expecting `after + n` would land. A chain of message ids does: once
/// a link is missing, no later write finds its predecessor.
enum Fence {
    Off,
    AfterSeq(u64),
    AfterId(String),
}

/// The stream of a KV bucket as NATS 2.9 needs it made by hand (history 1,
/// file storage, `replicas` copies): leases and replicas alike.
pub(crate) fn kv_stream(bucket: &str, replicas: usize) -> async_nats::jetstream::stream::Config {
    use async_nats::jetstream::stream;
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}

impl NatsReplica {
    pub(crate) async fn open(
        js: &async_nats::jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self> {
        let config = async_nats::jetstream::stream::Config {
            // Every write has a message id (the fence's chain): the server
            // keeps them for dedup only this long.
            duplicate_window: std::time::Duration::from_secs(2),
            ..kv_stream(bucket, replicas)
        };
        js.get_or_create_stream(config)
            .await
            .map_err(|e| BusError::Transport(format!("replica bucket {bucket}: {e}")))?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 40);
        Ok(NatsReplica {
            js: js.clone(),
            stream: format!("KV_{bucket}"),
            subject_prefix: format!("$KV.{bucket}."),
            split: Mutex::new(HashMap::new()),
            nonces: AtomicU64::new(seed),
            writer: seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15,
            sent: AtomicU64::new(0),
        })
    }

    fn split_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Head>> {
        match self.split.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// Publishes every `(key, value)` (`None`: a delete marker), at most
    /// [`MAX_IN_FLIGHT`] at once, and returns the highest sequence stored.
    /// Every publish has a message id of this writer's; with a fence, each
    /// expects the stream's last message to be the one before it (the
    /// first of a call: the sequence `after`), so once one finds another
    /// writer's message there, none after it lands either (see [`Fence`]).
    async fn publish_all(
        &self,
        writes: Vec<(String, Option<Vec<u8>>)>,
        fence: &mut Fence,
    ) -> Result<u64> {
        use futures::StreamExt as _;
        let mut last = 0u64;
        let mut in_flight = futures::stream::FuturesUnordered::new();
        for (key, value) in writes {
            if in_flight.len() >= MAX_IN_FLIGHT
                && let Some(done) = in_flight.next().await
            {
                last = last.max(done?);
            }
            let subject = format!("{}{key}", self.subject_prefix);
            let mut msg = match value {
                Some(v) => {
                    async_nats::jetstream::message::PublishMessage::build().payload(v.into())
                }
                None => {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("KV-Operation", "DEL");
                    async_nats::jetstream::message::PublishMessage::build()
                        .payload(bytes::Bytes::new())
                        .headers(headers)
                }
            };
            let id = format!(
                "{:x}-{}",
                self.writer,
                self.sent.fetch_add(1, Ordering::Relaxed)
            );
            msg = match fence {
                Fence::Off => msg,
                Fence::AfterSeq(seq) => msg.expected_last_sequence(*seq),
                Fence::AfterId(prev) => msg.expected_last_message_id(prev.as_str()),
            };
            if !matches!(fence, Fence::Off) {
                *fence = Fence::AfterId(id.clone());
            }
            msg = msg.message_id(id);
            let pending = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.js.send_publish(subject, msg),
            )
            .await
            .map_err(|_| {
                BusError::Transport(format!(
                    "replica write of {key}: NATS did not take it within 10 s"
                ))
            })?
            .map_err(|e| BusError::Transport(format!("replica write of {key}: {e}")))?;
            in_flight.push(async move {
                pending.await.map(|ack| ack.sequence).map_err(|e| {
                    use async_nats::jetstream::context::PublishErrorKind;
                    if matches!(
                        e.kind(),
                        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
                    ) {
                        BusError::Conflict(format!(
                            "replica write of {key}: another writer wrote to the bucket"
                        ))
                    } else {
                        BusError::Transport(format!("replica write of {key}: {e}"))
                    }
                })
            });
        }
        while let Some(done) = in_flight.next().await {
            last = last.max(done?);
        }
        Ok(last)
    }
}

#[async_trait]
impl ReplicaStore for NatsReplica {
    async fn put_many_after(&self, entries: Vec<ReplicaEntry>, after: Option<u64>) -> Result<u64> {
        let mut fence = match after {
            Some(seq) => Fence::AfterSeq(seq),
            None => Fence::Off,
        };
        check_keys(&entries)?;
        // Stage 1: plain values, deletes and the chunks of split values.
        let mut first = Vec::with_capacity(entries.len());
        let mut heads: Vec<(String, Head)> = Vec::new();
        let mut replaced: Vec<Head> = Vec::new();
        {
            let known = self.split_map();
            for (key, value) in entries {
                if let Some(old) = known.get(&key) {
                    replaced.push(*old);
                }
                match value {
                    Some(v) if v.len() + 1 > CHUNK_BYTES => {
                        let head = Head {
                            nonce: self.nonces.fetch_add(1, Ordering::Relaxed),
                            chunks: u32::try_from(v.len().div_ceil(CHUNK_BYTES))
                                .unwrap_or(u32::MAX),
                            len: v.len() as u64,
                        };
                        for (i, part) in v.chunks(CHUNK_BYTES).enumerate() {
                            first.push((
                                head.chunk_key(u32::try_from(i).unwrap_or(u32::MAX)),
                                Some(part.to_vec()),
                            ));
                        }
                        heads.push((key, head));
                    }
                    Some(v) => {
                        let mut body = Vec::with_capacity(v.len() + 1);
                        body.push(INLINE);
                        body.extend_from_slice(&v);
                        first.push((key, Some(body)));
                    }
                    None => first.push((key, None)),
                }
            }
        }
        let mut last = self.publish_all(first, &mut fence).await?;
        // Stage 2: the heads of split values, once their chunks are stored.
        if !heads.is_empty() {
            let writes = heads
                .iter()
                .map(|(k, h)| (k.clone(), Some(h.encode())))
                .collect();
            last = last.max(self.publish_all(writes, &mut fence).await?);
        }
        // Stage 3: what the new values replaced.
        {
            let mut known = self.split_map();
            for (k, h) in &heads {
                known.insert(k.clone(), *h);
            }
        }
        let new_nonces: std::collections::HashSet<u64> =
            heads.iter().map(|(_, h)| h.nonce).collect();
        let stale: Vec<(String, Option<Vec<u8>>)> = replaced
            .iter()
            .filter(|h| !new_nonces.contains(&h.nonce))
            .flat_map(|h| (0..h.chunks).map(|i| (h.chunk_key(i), None)))
            .collect();
        if !stale.is_empty() {
            last = last.max(self.publish_all(stale, &mut fence).await?);
        }
        // Fenced and nothing written: where it was.
        Ok(match (after, &fence) {
            (Some(seq), Fence::AfterSeq(_)) => seq,
            _ => last,
        })
    }

    async fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        use futures::StreamExt as _;
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| BusError::Transport(format!("replica bucket {}: {e}", self.stream)))?;
        let messages = stream.cached_info().state.messages;
        if messages == 0 {
            return Ok(Vec::new());
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: format!("{}>", self.subject_prefix),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::Transport(format!("reading replica {}: {e}", self.stream)))?;
        let mut msgs = consumer
            .messages()
            .await
            .map_err(|e| BusError::Transport(format!("reading replica {}: {e}", self.stream)))?;
        let mut values: HashMap<String, Vec<u8>> = HashMap::new();
        let mut chunks: HashMap<String, Vec<u8>> = HashMap::new();
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), msgs.next())
                .await
                .map_err(|_| {
                    BusError::Transport(format!(
                        "reading replica {}: no message for 10 s",
                        self.stream
                    ))
                })?;
            let Some(m) = next else { break };
            let m = m.map_err(|e| {
                BusError::Transport(format!("reading replica {}: {e}", self.stream))
            })?;
            let pending = m.info().map(|i| i.pending).unwrap_or(0);
            let key = m
                .subject
                .as_str()
                .strip_prefix(self.subject_prefix.as_str())
                .unwrap_or_default()
                .to_string();
            let deleted = m
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
            if !key.is_empty() && !deleted {
                if key.starts_with(CHUNK_PREFIX) {
                    chunks.insert(key, m.payload.to_vec());
                } else {
                    values.insert(key, m.payload.to_vec());
                }
            }
            if pending == 0 {
                break;
            }
        }
        let mut out = Vec::with_capacity(values.len());
        let mut known = HashMap::new();
        for (key, body) in values {
            match body.first() {
                Some(&INLINE) => out.push((key, body[1..].to_vec())),
                Some(&SPLIT) => {
                    let Some(head) = Head::decode(&body) else {
                        return Err(BusError::Invalid(format!(
                            "replica {}: the head of {key} does not decode",
                            self.stream
                        )));
                    };
                    let mut value = Vec::with_capacity(usize::try_from(head.len).unwrap_or(0));
                    for i in 0..head.chunks {
                        let Some(part) = chunks.get(&head.chunk_key(i)) else {
                            return Err(BusError::Invalid(format!(
                                "replica {}: chunk {i} of {key} is missing",
                                self.stream
                            )));
                        };
                        value.extend_from_slice(part);
                    }
                    if value.len() as u64 != head.len {
                        return Err(BusError::Invalid(format!(
                            "replica {}: {key} has {} bytes, its head says {}",
                            self.stream,
                            value.len(),
                            head.len
                        )));
                    }
                    known.insert(key.clone(), head);
                    out.push((key, value));
                }
                _ => {
                    return Err(BusError::Invalid(format!(
                        "replica {}: the value of {key} is not one this version wrote",
                        self.stream
                    )));
                }
            }
        }
        *self.split_map() = known;
        Ok(out)
    }

    async fn last_seq(&self) -> Result<u64> {
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| BusError::Transport(format!("replica bucket {}: {e}", self.stream)))?;
        let info = stream
            .info()
            .await
            .map_err(|e| BusError::Transport(format!("replica bucket {}: {e}", self.stream)))?;
        Ok(info.state.last_sequence)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| BusError::Transport(format!("replica bucket {}: {e}", self.stream)))?;
        let subject = format!("{}{key}", self.subject_prefix);
        let raw = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(raw) => raw,
            Err(e) => {
                let text = e.to_string();
                if text.contains("not found")
                    || text.contains("no message found")
                    || text.contains("10037")
                {
                    return Ok(None);
                }
                return Err(BusError::Transport(format!("replica {key}: {text}")));
            }
        };
        let deleted = raw
            .headers
            .get("KV-Operation")
            .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
        if deleted {
            return Ok(None);
        }
        match raw.payload.first() {
            Some(&INLINE) => Ok(Some(raw.payload[1..].to_vec())),
            _ => Err(BusError::Invalid(format!(
                "replica {key}: only small values are read one by one"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(valid_key("runs.x6162"));
        assert!(valid_key("_meta.partitions"));
        assert!(!valid_key(""));
        assert!(!valid_key("runs..x"));
        assert!(!valid_key("runs.a b"));
        assert!(!valid_key("_c.00.1"));
        assert!(!valid_key("runs.*"));
    }

    #[test]
    fn heads_round_trip() {
        let h = Head {
            nonce: 7,
            chunks: 3,
            len: 2_000_000,
        };
        assert_eq!(Head::decode(&h.encode()), Some(h));
        assert_eq!(Head::decode(&[SPLIT, 1, 2]), None);
    }

    #[tokio::test]
    async fn the_memory_replica_keeps_the_newest_values() {
        let r = MemoryReplica::default();
        assert_eq!(r.last_seq().await.unwrap(), 0);
        let seq = r
            .put_many(vec![
                ("a.x01".into(), Some(b"1".to_vec())),
                ("a.x02".into(), Some(b"2".to_vec())),
            ])
            .await
            .unwrap();
        assert_eq!(seq, 2);
        r.put_many(vec![("a.x01".into(), None)]).await.unwrap();
        assert_eq!(
            r.load_all().await.unwrap(),
            vec![("a.x02".into(), b"2".to_vec())]
        );
        assert_eq!(r.get("a.x02").await.unwrap(), Some(b"2".to_vec()));
        assert!(r.put_many(vec![("bad key".into(), None)]).await.is_err());
    }
}
