//! Typed helpers: publish, request and consume prost messages. A payload that
//! does not decode as the expected type is dead-lettered with the decoder's
//! reason and skipped; it never reaches (or panics) the handler.

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::bus::{Bus, Consumer, Delivery, PublishAck, Subscription, dead_letter_for};
use crate::error::{BusError, Result};
use crate::message::{CONTENT_TYPE, Headers, Message, Outgoing, protobuf_content_type};

/// A protobuf message the bus can carry.
pub trait ProtoMessage: prost::Message + prost::Name + Default + Send + Sync + 'static {}
impl<T: prost::Message + prost::Name + Default + Send + Sync + 'static> ProtoMessage for T {}

/// Encodes `msg` with its `content-type` header.
pub fn encode<M: ProtoMessage>(msg: &M) -> Outgoing {
    Outgoing::new(Bytes::from(msg.encode_to_vec()))
        .header(CONTENT_TYPE, protobuf_content_type(&M::full_name()))
}

/// Decodes a received message as `M`.
pub fn decode<M: ProtoMessage>(msg: &Message) -> Result<M> {
    M::decode(msg.payload.clone()).map_err(|source| BusError::Decode {
        subject: msg.subject.clone(),
        expected: M::full_name(),
        source,
    })
}

/// Typed operations on any [`Bus`].
#[async_trait]
pub trait BusExt: Bus {
    /// Publishes a protobuf message.
    async fn publish_proto<M: ProtoMessage>(&self, subject: &str, msg: &M) -> Result<()> {
        self.publish(subject, encode(msg)).await
    }

    /// Publishes a protobuf message with extra headers (`traceparent`, ...).
    async fn publish_proto_with<M: ProtoMessage>(
        &self,
        subject: &str,
        msg: &M,
        headers: Headers,
    ) -> Result<()> {
        let mut out = encode(msg);
        for (k, v) in headers.iter() {
            out.headers.insert(k, v);
        }
        self.publish(subject, out).await
    }

    /// Stores a protobuf message durably, deduplicated by `msg_id`.
    async fn publish_durable_proto<M: ProtoMessage>(
        &self,
        subject: &str,
        msg: &M,
        msg_id: &str,
    ) -> Result<PublishAck> {
        self.publish_durable(subject, encode(msg).msg_id(msg_id))
            .await
    }

    /// Sends a protobuf request and decodes the reply as `R`.
    async fn request_proto<Q: ProtoMessage, R: ProtoMessage>(
        &self,
        subject: &str,
        req: &Q,
        timeout: Duration,
    ) -> Result<R> {
        let reply = self.request(subject, encode(req), timeout).await?;
        decode(&reply)
    }

    /// Answers a request with a protobuf message.
    async fn respond_proto<M: ProtoMessage>(&self, reply: &str, msg: &M) -> Result<()> {
        self.respond(reply, encode(msg)).await
    }

    /// Subscribes to protobuf messages of type `M`.
    async fn subscribe_proto<M: ProtoMessage>(
        &self,
        subject: &str,
    ) -> Result<TypedSubscription<M>> {
        Ok(TypedSubscription::new(self.subscribe(subject).await?))
    }

    /// Subscribes to protobuf messages of type `M` in a queue group.
    async fn queue_subscribe_proto<M: ProtoMessage>(
        &self,
        subject: &str,
        group: &str,
    ) -> Result<TypedSubscription<M>> {
        Ok(TypedSubscription::new(
            self.queue_subscribe(subject, group).await?,
        ))
    }
}

impl<B: Bus + ?Sized> BusExt for B {}

/// A subscription that decodes each message as `M`.
#[derive(Debug)]
pub struct TypedSubscription<M> {
    inner: Subscription,
    _type: PhantomData<fn() -> M>,
}

impl<M: ProtoMessage> TypedSubscription<M> {
    /// Wraps an untyped subscription.
    pub fn new(inner: Subscription) -> Self {
        TypedSubscription {
            inner,
            _type: PhantomData,
        }
    }

    /// The next message that decodes as `M`, with its envelope. Messages that do
    /// not decode go to the dead-letter subject with the reason.
    pub async fn next(&mut self) -> Option<(M, Message)> {
        loop {
            let msg = self.inner.next().await?;
            match decode::<M>(&msg) {
                Ok(value) => return Some((value, msg)),
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "dead-lettering a message that does not decode");
                    let letter = dead_letter_for(
                        &msg,
                        e.to_string(),
                        1,
                        self.inner.subject(),
                        &M::full_name(),
                    );
                    if let Err(e) = self.inner.dead_letters().dead_letter(letter).await {
                        tracing::error!(subject = %msg.subject, error = %e, "could not publish a dead letter");
                    }
                }
            }
        }
    }
}

impl Consumer {
    /// Like [`Consumer::fetch`], decoding each delivery as `M`. A delivery that
    /// does not decode is dead-lettered with the reason and terminated.
    pub async fn fetch_proto<M: ProtoMessage>(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(M, Delivery)>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut out = Vec::new();
            for d in self.fetch(max, left).await? {
                match decode::<M>(&d.message) {
                    Ok(value) => out.push((value, d)),
                    Err(e) => {
                        tracing::warn!(subject = %d.message.subject, error = %e, "dead-lettering a delivery that does not decode");
                        d.term_as(e.to_string(), &M::full_name()).await?;
                    }
                }
            }
            if !out.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(out);
            }
        }
    }
}
