//! Bus benchmark: publish→subscriber messages per second and request/reply round
//! trip p50/p99, through the `Bus` trait on the embedded bus and on NATS, and
//! through raw async-nats calls on the same nats-server (the floor).
//!
//! `cargo bench -p concierto-bus --bench bus` (BENCH_MSGS, BENCH_REQUESTS and
//! BENCH_ROUNDS scale it). Starts its own nats-server on a free port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concierto_bus::{Bus, EmbeddedBus, NatsBus, NatsOptions, Outgoing};
use futures::StreamExt;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    name: &'static str,
    msgs_per_sec: f64,
    received: usize,
    sent: usize,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

async fn trait_pubsub(bus: Arc<dyn Bus>, n: usize) -> (f64, usize) {
    let mut sub = bus.subscribe("bench.pub").await.expect("subscribe");
    bus.flush().await.expect("flush");
    let payload = Bytes::from(vec![7u8; 128]);
    let counter = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        (got, Instant::now())
    });
    let start = Instant::now();
    for _ in 0..n {
        bus.publish("bench.pub", Outgoing::new(payload.clone()))
            .await
            .expect("publish");
    }
    bus.flush().await.expect("flush");
    let (got, end) = counter.await.expect("counter");
    (got as f64 / (end - start).as_secs_f64(), got)
}

async fn trait_request(bus: Arc<dyn Bus>, n: usize) -> Vec<Duration> {
    let mut sub = bus.subscribe("bench.req").await.expect("subscribe");
    let server = bus.clone();
    let responder = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = server.respond(&reply, Outgoing::new(m.payload)).await;
            }
        }
    });
    bus.flush().await.expect("flush");
    let payload = Bytes::from(vec![7u8; 128]);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        bus.request(
            "bench.req",
            Outgoing::new(payload.clone()),
            Duration::from_secs(5),
        )
        .await
        .expect("request");
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    responder.abort();
    lat.sort();
    lat
}

async fn raw_pubsub(client: async_nats::Client, n: usize) -> (f64, usize) {
    let mut sub = client.subscribe("raw.bench.pub").await.expect("subscribe");
    client.flush().await.expect("flush");
    let payload = Bytes::from(vec![7u8; 128]);
    let counter = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        (got, Instant::now())
    });
    let start = Instant::now();
    for _ in 0..n {
        client
            .publish("raw.bench.pub", payload.clone())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let (got, end) = counter.await.expect("counter");
    (got as f64 / (end - start).as_secs_f64(), got)
}

async fn raw_request(client: async_nats::Client, n: usize) -> Vec<Duration> {
    let mut sub = client.subscribe("raw.bench.req").await.expect("subscribe");
    let server = client.clone();
    let responder = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = server.publish(reply, m.payload).await;
            }
        }
    });
    client.flush().await.expect("flush");
    let payload = Bytes::from(vec![7u8; 128]);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        client
            .request("raw.bench.req", payload.clone())
            .await
            .expect("request");
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    responder.abort();
    lat.sort();
    lat
}

fn main() {
    let msgs = env("BENCH_MSGS", 50_000);
    let requests = env("BENCH_REQUESTS", 5_000);
    let rounds = env("BENCH_ROUNDS", 3).max(1);
    let server = concierto_testkit::NatsServer::start().expect("start nats-server");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Rounds interleave the three paths so that drift on a shared machine
    // (other processes, CPU frequency) falls on all of them alike.
    let figures = rt.block_on(async {
        let url = server.url();
        let connect = || async {
            let bus: Arc<dyn Bus> = Arc::new(
                NatsBus::connect(&url, NatsOptions::default())
                    .await
                    .expect("connect"),
            );
            bus
        };
        let mut rates: [Vec<f64>; 3] = Default::default();
        let mut received = [0usize; 3];
        let mut lats: [Vec<Duration>; 3] = Default::default();
        for _ in 0..rounds {
            let (r, got) = trait_pubsub(Arc::new(EmbeddedBus::default()), msgs).await;
            rates[0].push(r);
            received[0] = got;
            let (r, got) = trait_pubsub(connect().await, msgs).await;
            rates[1].push(r);
            received[1] = got;
            let client = async_nats::connect(&url).await.expect("connect");
            let (r, got) = raw_pubsub(client, msgs).await;
            rates[2].push(r);
            received[2] = got;

            lats[0].extend(trait_request(Arc::new(EmbeddedBus::default()), requests).await);
            lats[1].extend(trait_request(connect().await, requests).await);
            let client = async_nats::connect(&url).await.expect("connect");
            lats[2].extend(raw_request(client, requests).await);
        }
        let names = ["Bus trait, embedded", "Bus trait, NATS", "raw async-nats"];
        let mut out = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            let lat = &mut lats[i];
            lat.sort();
            out.push(Figures {
                name,
                msgs_per_sec: median(std::mem::take(&mut rates[i])),
                received: received[i],
                sent: msgs,
                p50: percentile(lat, 0.50),
                p99: percentile(lat, 0.99),
            });
        }
        out
    });
    println!(
        "bus benchmark: {msgs} messages of 128 B per round (median of {rounds} rounds), {requests} sequential requests per round"
    );
    println!(
        "{:<22} {:>14} {:>12} {:>10} {:>10}",
        "path", "msgs/s", "received", "req p50", "req p99"
    );
    for f in &figures {
        println!(
            "{:<22} {:>14.0} {:>12} {:>10.1?} {:>10.1?}",
            f.name,
            f.msgs_per_sec,
            format!("{}/{}", f.received, f.sent),
            f.p50,
            f.p99
        );
    }
    if let [_, nats, raw] = figures.as_slice() {
        let throughput = (raw.msgs_per_sec - nats.msgs_per_sec) / raw.msgs_per_sec * 100.0;
        let p50 = (nats.p50.as_secs_f64() - raw.p50.as_secs_f64()) / raw.p50.as_secs_f64() * 100.0;
        let p99 = (nats.p99.as_secs_f64() - raw.p99.as_secs_f64()) / raw.p99.as_secs_f64() * 100.0;
        println!(
            "trait over raw async-nats: throughput {throughput:+.1}% lower, p50 {p50:+.1}%, p99 {p99:+.1}%"
        );
    }
}
