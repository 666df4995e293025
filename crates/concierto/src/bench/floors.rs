//! The floors of `concierto bench`: what the nats-server itself gives on this
//! machine, measured with async-nats alone before any Concierto service runs,
//! so that the studio's figures can be read against them.
//!
//! - Request/reply round trips per second: one at a time, then with
//!   `in_flight` requests outstanding, against a responder on the same
//!   connection's server (a plain core-NATS subscription that echoes).
//! - JetStream: `messages` asynchronous publishes to a file stream of its own
//!   (acks awaited, at most 256 outstanding), then a pull consumer that
//!   reads and acks them all; messages per second for each half and for both.
//!
//! Subjects and the stream carry a random tag, so a shared server (`--nats`)
//! is not disturbed; the stream is deleted at the end.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt as _;

/// Publishes awaited at once.
const PUBLISH_WINDOW: usize = 256;
/// Longest wait for the consumer's next message: past it, the floor fails.
const CONSUME_STALL: Duration = Duration::from_secs(30);

/// What the floors measured.
#[derive(Debug, Clone)]
pub struct Floors {
    /// Sequential request/reply round trips per second.
    pub request_reply_sequential_per_s: f64,
    /// Request/reply round trips per second with `in_flight` outstanding.
    pub request_reply_parallel_per_s: f64,
    /// JetStream acknowledged publishes per second.
    pub jetstream_publish_per_s: f64,
    /// JetStream messages pulled and acked per second.
    pub jetstream_consume_per_s: f64,
    /// Both halves: messages over the publish and consume time together.
    pub jetstream_publish_consume_per_s: f64,
}

/// How many of each the floors do.
#[derive(Debug, Clone, Copy)]
pub struct FloorSizes {
    /// Round trips, one at a time.
    pub sequential: usize,
    /// Round trips with `in_flight` outstanding.
    pub parallel: usize,
    /// Outstanding round trips in the parallel measurement.
    pub in_flight: usize,
    /// JetStream messages.
    pub messages: usize,
}

/// Measures the floors on the server at `url`.
pub async fn measure(url: &str, sizes: FloorSizes) -> anyhow::Result<Floors> {
    let client = async_nats::ConnectOptions::new()
        .name("concierto-bench-floors")
        .connect(url)
        .await
        .with_context(|| format!("the floors could not connect to NATS at {url}"))?;
    let tag = format!("{:08x}", rand::random::<u32>());
    let (sequential, parallel) = request_reply(&client, &tag, sizes).await?;
    let js = jetstream(&client, &tag, sizes.messages).await?;
    Ok(Floors {
        request_reply_sequential_per_s: sequential,
        request_reply_parallel_per_s: parallel,
        jetstream_publish_per_s: js.0,
        jetstream_consume_per_s: js.1,
        jetstream_publish_consume_per_s: js.2,
    })
}

/// Per second, guarded against a zero duration.
pub fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

async fn request_reply(
    client: &async_nats::Client,
    tag: &str,
    sizes: FloorSizes,
) -> anyhow::Result<(f64, f64)> {
    let subject = format!("bench.floor.{tag}.echo");
    let mut sub = client.subscribe(subject.clone()).await?;
    let responder = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(reply) = m.reply
                    && client.publish(reply, m.payload).await.is_err()
                {
                    break;
                }
            }
        })
    };
    client.flush().await?;
    let payload = bytes_of(64);
    let measured = async {
        let t0 = Instant::now();
        for _ in 0..sizes.sequential {
            client
                .request(subject.clone(), payload.clone())
                .await
                .context("a request/reply round trip of the floor failed")?;
        }
        let sequential = rate(sizes.sequential, t0.elapsed());
        let t0 = Instant::now();
        let mut calls = futures::stream::iter(0..sizes.parallel)
            .map(|_| client.request(subject.clone(), payload.clone()))
            .buffer_unordered(sizes.in_flight.max(1));
        while let Some(r) = calls.next().await {
            r.context("a request/reply round trip of the floor failed")?;
        }
        let parallel = rate(sizes.parallel, t0.elapsed());
        anyhow::Ok((sequential, parallel))
    }
    .await;
    responder.abort();
    measured
}

async fn jetstream(
    client: &async_nats::Client,
    tag: &str,
    messages: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let js = jetstream::new(client.clone());
    let name = format!("BENCH_FLOOR_{tag}");
    let subject = format!("bench.floor.{tag}.js");
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .context("the floors could not create their JetStream stream (is JetStream on?)")?;
    let measured = async {
        let payload = bytes_of(256);
        let t0 = Instant::now();
        let mut acks = futures::stream::iter(0..messages)
            .map(|_| {
                let (js, subject, payload) = (&js, subject.clone(), payload.clone());
                async move { js.publish(subject, payload).await?.await }
            })
            .buffer_unordered(PUBLISH_WINDOW);
        while let Some(ack) = acks.next().await {
            ack.context("a JetStream publish of the floor was not acknowledged")?;
        }
        let published = t0.elapsed();

        let consumer = stream
            .create_consumer(pull::Config {
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await?;
        let t0 = Instant::now();
        let mut got = consumer.messages().await?;
        let mut read = 0;
        while read < messages {
            let Ok(next) = tokio::time::timeout(CONSUME_STALL, got.next()).await else {
                bail!(
                    "the floor's consumer got no message for {}s after {read} of {messages}",
                    CONSUME_STALL.as_secs()
                );
            };
            let Some(m) = next else {
                bail!("the floor's consumer ended after {read} of {messages} messages");
            };
            let m = match m {
                Ok(m) => m,
                // Not fatal: the pull goes on (a busy machine can miss one).
                Err(e)
                    if e.kind()
                        == jetstream::consumer::pull::MessagesErrorKind::MissingHeartbeat =>
                {
                    continue;
                }
                Err(e) => bail!("the floor's consumer failed: {e}"),
            };
            m.ack()
                .await
                .map_err(|e| anyhow::anyhow!("the floor's consumer could not ack: {e}"))?;
            read += 1;
        }
        let consumed = t0.elapsed();
        anyhow::Ok((
            rate(messages, published),
            rate(messages, consumed),
            rate(messages, published + consumed),
        ))
    }
    .await;
    if let Err(e) = js.delete_stream(&name).await {
        tracing::warn!(stream = %name, error = %e, "could not delete the floor's stream");
    }
    measured
}

fn bytes_of(n: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![b'x'; n])
}
