//! Rate limits of the web form (`POST /feedback`), which anyone may post to:
//! a token bucket per client address and one for the whole form, each
//! refilled evenly over a minute on the service's clock. A post over either
//! is answered 429 with `Retry-After` (whole seconds until a post is
//! allowed again), before its body is read.
//!
//! - A client is its address as the server sees it (IPv6 by its /64, what
//!   one host is usually given): behind a reverse proxy every post comes from
//!   the proxy, so the per-client limit acts as a second global limit there.
//!   Without a peer address (a router served without connect info) only the
//!   global limit applies.
//! - Memory is bounded: a client gets an entry only when a post of theirs is
//!   allowed (so at most the global rate of new entries), an entry whose
//!   bucket is full again is the same as none and is dropped when the table
//!   fills, and the table never holds more than `max_clients` entries (the
//!   oldest goes first).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::FeedbackState;

/// The web form's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormRateLimit {
    /// Posts per minute from one client (also its burst); default 10.
    pub per_client_per_minute: u32,
    /// Posts per minute from everyone together (also the burst); default 60.
    pub per_minute: u32,
    /// Most clients remembered at once; default 10,000.
    pub max_clients: usize,
}

impl Default for FormRateLimit {
    fn default() -> Self {
        FormRateLimit {
            per_client_per_minute: 10,
            per_minute: 60,
            max_clients: 10_000,
        }
    }
}

/// Which limit refused a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The client's own.
    Client,
    /// The form's, over every client.
    Global,
}

/// A refused post: which limit, and how long until one is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit that refused it.
    pub scope: Scope,
    /// Wait before the next post is allowed (whole seconds, at least 1).
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

impl Bucket {
    fn full(capacity: f64, now: DateTime<Utc>) -> Self {
        Bucket {
            tokens: capacity,
            at: now,
        }
    }

    /// The tokens at `now` (a clock going back refills nothing).
    fn level(&self, capacity: f64, now: DateTime<Utc>) -> f64 {
        let elapsed = (now - self.at).num_milliseconds().max(0) as f64 / 1000.0;
        (self.tokens + elapsed * capacity / 60.0).min(capacity)
    }

    /// Whole seconds until a token is there, at least 1.
    fn wait(level: f64, capacity: f64) -> Duration {
        // A hair under, so that float noise does not add a second.
        let secs = ((1.0 - level) * 60.0 / capacity - 1e-9)
            .ceil()
            .clamp(1.0, 60.0);
        Duration::from_secs(secs as u64)
    }
}

#[derive(Debug)]
struct Buckets {
    global: Bucket,
    clients: HashMap<IpAddr, Bucket>,
}

/// The web form's buckets.
#[derive(Debug)]
pub struct RateLimiter {
    limit: FormRateLimit,
    buckets: Mutex<Option<Buckets>>,
}

/// The address that stands for a client: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl RateLimiter {
    /// Buckets for `limit`, all full.
    pub fn new(limit: FormRateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(None),
        }
    }

    /// Takes a post by `client` (when its address is known) at `now`, or says
    /// which limit refuses it and for how long.
    pub fn check(&self, client: Option<IpAddr>, now: DateTime<Utc>) -> Result<(), Limited> {
        let per_client = f64::from(self.limit.per_client_per_minute.max(1));
        let global_cap = f64::from(self.limit.per_minute.max(1));
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = guard.get_or_insert_with(|| Buckets {
            global: Bucket::full(global_cap, now),
            clients: HashMap::new(),
        });
        let client = client.map(client_key);
        let client_level = client
            .and_then(|c| b.clients.get(&c))
            .map(|bucket| bucket.level(per_client, now));
        if let Some(level) = client_level
            && level < 1.0
        {
            return Err(Limited {
                scope: Scope::Client,
                retry_after: Bucket::wait(level, per_client),
            });
        }
        let global = b.global.level(global_cap, now);
        if global < 1.0 {
            return Err(Limited {
                scope: Scope::Global,
                retry_after: Bucket::wait(global, global_cap),
            });
        }
        b.global = Bucket {
            tokens: global - 1.0,
            at: now,
        };
        if let Some(c) = client {
            if client_level.is_none() && b.clients.len() >= self.limit.max_clients.max(1) {
                Self::make_room(
                    &mut b.clients,
                    self.limit.max_clients.max(1),
                    per_client,
                    now,
                );
            }
            b.clients.insert(
                c,
                Bucket {
                    tokens: client_level.unwrap_or(per_client) - 1.0,
                    at: now,
                },
            );
        }
        Ok(())
    }

    /// Drops the clients whose bucket is full again (the same as no entry);
    /// then, while the table is still full, the least recently seen.
    fn make_room(
        clients: &mut HashMap<IpAddr, Bucket>,
        max: usize,
        capacity: f64,
        now: DateTime<Utc>,
    ) {
        clients.retain(|_, b| b.level(capacity, now) < capacity);
        while clients.len() >= max {
            let oldest = clients.iter().min_by_key(|(_, b)| b.at).map(|(ip, _)| *ip);
            match oldest {
                Some(ip) => {
                    clients.remove(&ip);
                }
                None => break,
            }
        }
    }

    /// Clients remembered now.
    pub fn clients(&self) -> usize {
        let guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or(0, |b| b.clients.len())
    }
}

/// Middleware of `/feedback`: a `POST` over a limit is answered 429 with
/// `Retry-After`, before its body is read; other requests pass.
pub(crate) async fn limit_form(
    State(state): State<FeedbackState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match state.form_limiter().check(peer, state.clock().now()) {
        Ok(()) => next.run(request).await,
        Err(limited) => {
            let secs = limited.retry_after.as_secs().max(1);
            let who = match limited.scope {
                Scope::Client => "from your address",
                Scope::Global => "to this form",
            };
            tracing::warn!(client = ?peer, scope = ?limited.scope, "feedback form post refused: over the rate limit");
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                format!("too many feedback posts {who}; try again in {secs} s\n"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("an address"))
    }

    #[test]
    fn a_client_gets_its_burst_then_one_post_per_refill() {
        let r = RateLimiter::new(FormRateLimit::default());
        for _ in 0..10 {
            assert_eq!(r.check(ip("10.0.0.1"), t(0)), Ok(()));
        }
        let refused = r.check(ip("10.0.0.1"), t(0)).expect_err("over");
        assert_eq!(refused.scope, Scope::Client);
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        // Another client is not held back by the first.
        assert_eq!(r.check(ip("10.0.0.2"), t(0)), Ok(()));
        // One post every six seconds refills.
        assert!(r.check(ip("10.0.0.1"), t(5)).is_err());
        assert_eq!(r.check(ip("10.0.0.1"), t(6)), Ok(()));
        assert!(r.check(ip("10.0.0.1"), t(6)).is_err());
    }

    #[test]
    fn the_global_limit_holds_over_every_client() {
        let r = RateLimiter::new(FormRateLimit {
            per_client_per_minute: 10,
            per_minute: 5,
            max_clients: 100,
        });
        for i in 0..5 {
            assert_eq!(r.check(ip(&format!("10.0.1.{i}")), t(0)), Ok(()));
        }
        let refused = r.check(ip("10.0.1.99"), t(0)).expect_err("over");
        assert_eq!(refused.scope, Scope::Global);
        assert_eq!(refused.retry_after, Duration::from_secs(12));
        // Refused posts leave no entry behind.
        assert_eq!(r.clients(), 5);
        // Without an address, only the global limit applies.
        assert!(r.check(None, t(0)).is_err());
        assert_eq!(r.check(None, t(12)), Ok(()));
    }

    #[test]
    fn the_client_table_stays_bounded() {
        let r = RateLimiter::new(FormRateLimit {
            per_client_per_minute: 10,
            per_minute: 1_000_000,
            max_clients: 100,
        });
        for i in 0..5_000u32 {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            assert_eq!(r.check(Some(IpAddr::V4(a)), t(i64::from(i / 100))), Ok(()));
            assert!(r.clients() <= 100, "{} clients", r.clients());
        }
        // IPv6 clients count by their /64.
        for host in 1..50u16 {
            let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, host);
            let _ = r.check(Some(IpAddr::V6(a)), t(100));
        }
        let refused = r
            .check(ip("2001:db8:0:1::ffff"), t(100))
            .expect_err("the /64 is one client");
        assert_eq!(refused.scope, Scope::Client);
    }
}
