//! Fetches keep to public addresses. The feed, page, robots.txt and X
//! requests of a source go through a client whose DNS resolver
//! ([`PublicOnly`]) answers only public addresses, so a host name (the
//! source's, a listing's link, a redirect's `Location`) that resolves to
//! loopback, a private or link-local network, CGNAT, multicast or another
//! non-public range is never connected to; a URL naming such an address
//! directly is refused before connecting ([`check_literal`]). Each redirect
//! hop is a new request, checked the same way.
//!
//! A `web_scraper` source opts out with `allow_private_networks: true` (an
//! intranet feed); the ingester as a whole with
//! [`IngestOptions::allow_private_networks`](crate::IngestOptions::allow_private_networks).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Which addresses a request may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Public addresses only (the default).
    Public,
    /// Any address, private networks included (opted in).
    Any,
}

impl Reach {
    /// `Any` when private networks are allowed.
    pub(crate) fn allowing_private(allowed: bool) -> Self {
        if allowed { Reach::Any } else { Reach::Public }
    }
}

/// Whether `ip` is a public unicast address: not unspecified, loopback,
/// private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16,
/// fe80::/10), CGNAT (100.64/10), multicast, broadcast, reserved or
/// documentation space, nor an IPv6 form embedding such an IPv4 address
/// (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network", 0.0.0.0 among it
        || ip.is_loopback() // 127/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10, carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24, protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && (b & 0xfe) == 18) // 198.18/15, benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || ip.is_multicast() // 224/4
        || a >= 240; // 240/4 reserved, 255.255.255.255 broadcast
    !special
}

fn public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = ip.segments();
    let v4_at = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if s[..6] == [0; 6] {
        // ::/96: unspecified, loopback and the old IPv4-compatible form.
        return false;
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return public_v4(v4_at(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return public_v4(v4_at(s[1], s[2])); // 6to4
    }
    let special = ip.is_multicast() // ff00::/8
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10, link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10, old site-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3]); // 100::/64, discard
    !special
}

/// A host refused because it is (or resolves only to) non-public addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotPublic {
    /// The host as named.
    pub host: String,
    /// The addresses it is or resolved to.
    pub addrs: Vec<IpAddr>,
}

impl fmt::Display for NotPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(IpAddr::to_string).collect();
        if addrs.len() == 1 && addrs[0] == self.host {
            write!(f, "{} is not a public address", self.host)?;
        } else {
            write!(
                f,
                "{} resolves only to non-public addresses ({})",
                self.host,
                addrs.join(", ")
            )?;
        }
        write!(
            f,
            " (loopback, private, link-local or reserved); set `allow_private_networks: true` \
             on the source to fetch from a private network"
        )
    }
}

impl std::error::Error for NotPublic {}

/// Refuses a URL whose host is a non-public IP address (a name is checked by
/// [`PublicOnly`] when it is resolved).
pub(crate) fn check_literal(url: &Url) -> Result<(), NotPublic> {
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(Host::Domain(_)) | None => return Ok(()),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(NotPublic {
            host: ip.to_string(),
            addrs: vec![ip],
        })
    }
}

/// A DNS resolver answering only the public addresses of a name (the
/// system's resolver, filtered); a name with none is a [`NotPublic`] error.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PublicOnly;

/// The public addresses among `found`, or why there are none.
pub(crate) fn public_only(
    host: &str,
    found: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, NotPublic> {
    let (public, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        found.into_iter().partition(|a| is_public(a.ip()));
    if public.is_empty() {
        return Err(NotPublic {
            host: host.to_string(),
            addrs: refused.iter().map(SocketAddr::ip).collect(),
        });
    }
    if !refused.is_empty() {
        tracing::debug!(host, refused = ?refused, "non-public addresses of a host left out");
    }
    Ok(public)
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public = public_only(&host, found)?;
            let addrs: Addrs = Box::new(public.into_iter());
            Ok::<Addrs, Box<dyn std::error::Error + Send + Sync>>(addrs)
        })
    }
}

/// The [`NotPublic`] refusal somewhere in an error's chain of causes.
pub(crate) fn not_public_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a NotPublic> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(np) = err.downcast_ref::<NotPublic>() {
            return Some(np);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn private_loopback_link_local_and_reserved_are_not_public() {
        for s in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(s)), "{s} is not public");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn literal_urls_are_checked_and_names_wait_for_resolution() {
        for u in [
            "http://127.0.0.1:8080/feed",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "https://169.254.169.254/latest/meta-data/",
        ] {
            let url = Url::parse(u).expect("url");
            let e = check_literal(&url).expect_err(u);
            assert!(e.to_string().contains("allow_private_networks"), "{e}");
        }
        for u in [
            "https://example.com/feed",
            "http://8.8.8.8/",
            "http://localhost/",
        ] {
            assert!(check_literal(&Url::parse(u).expect("url")).is_ok(), "{u}");
        }
    }

    #[test]
    fn resolved_addresses_keep_the_public_ones_or_say_why_not() {
        let a = |s: &str| SocketAddr::new(ip(s), 0);
        let mixed = public_only("mixed.example", vec![a("10.0.0.1"), a("93.184.216.34")]);
        assert_eq!(mixed.expect("one public"), vec![a("93.184.216.34")]);
        let e = public_only("intranet.example", vec![a("10.0.0.1"), a("fd00::1")])
            .expect_err("none public");
        assert_eq!(e.addrs, vec![ip("10.0.0.1"), ip("fd00::1")]);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "intranet.example resolves only to non-public addresses (10.0.0.1, fd00::1)"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_localhost() {
        let name: Name = "localhost".parse().expect("a name");
        let Err(e) = PublicOnly.resolve(name).await else {
            panic!("localhost resolved to a public address");
        };
        let np = not_public_in(e.as_ref()).expect("a NotPublic refusal");
        assert_eq!(np.host, "localhost");
        assert!(np.addrs.iter().all(|a| a.is_loopback()), "{np:?}");
    }
}
