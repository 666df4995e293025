//! `concierto probe URL`: one HTTP GET, exit status 0 on a 2xx answer. The
//! container image's health check (a slim image has no curl), and what
//! docker-compose and the tests run. Plain `http://` only: the health endpoints
//! are served on the pod's own address.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a probe failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The URL is not `http://host:port/path`.
    BadUrl(String),
    /// No connection, or no complete status line, within the timeout.
    Unreachable(String),
    /// An answer that is not 2xx (its status line).
    Status(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::BadUrl(m) => write!(f, "bad URL: {m}"),
            ProbeError::Unreachable(m) => write!(f, "unreachable: {m}"),
            ProbeError::Status(s) => write!(f, "answered {s}"),
        }
    }
}

/// `http://host[:port][/path]` split into the address to connect to, the Host
/// header and the request target.
fn split_url(url: &str) -> Result<(String, String, String), ProbeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ProbeError::BadUrl(format!("{url:?} does not start with http://")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(char::is_whitespace) {
        return Err(ProbeError::BadUrl(format!(
            "{url:?} is not http://host:port/path"
        )));
    }
    // A port after the last ':' unless that ':' is inside an IPv6 literal.
    let has_port = authority
        .rfind(':')
        .is_some_and(|i| !authority[i..].contains(']'));
    let addr = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority.to_string(), path.to_string()))
}

/// GETs `url` and succeeds on a 2xx status, all within `timeout`.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let (addr, host, path) = split_url(url)?;
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| ProbeError::Unreachable(format!("{addr}: {e}")))?
        .collect();
    let mut last = format!("{addr}: no address");
    let mut stream = None;
    for a in addrs {
        let wait = left();
        if wait.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, wait) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(ProbeError::Unreachable(last))?;
    let io = |e: std::io::Error| ProbeError::Unreachable(format!("{addr}: {e}"));
    stream
        .set_write_timeout(Some(left().max(Duration::from_millis(1))))
        .map_err(io)?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: concierto-probe\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(io)?;
    // Reads until the status line is complete; the body does not matter.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 8192 {
        let wait = left();
        if wait.is_zero() {
            return Err(ProbeError::Unreachable(format!(
                "{addr}: no answer in time"
            )));
        }
        stream.set_read_timeout(Some(wait)).map_err(io)?;
        match stream.read(&mut buf).map_err(io)? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default().trim().to_string();
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::Unreachable(format!("{addr}: not an HTTP answer: {line:?}")))?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot HTTP server answering `status_line`; returns its port and the request it read.
    fn serve_once(status_line: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 256];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(format!("{status_line}\r\ncontent-length: 2\r\n\r\nok").as_bytes())
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        (port, h)
    }

    #[test]
    fn a_2xx_answer_passes_and_the_request_names_path_and_host() {
        let (port, h) = serve_once("HTTP/1.1 200 OK");
        let url = format!("http://127.0.0.1:{port}/readyz");
        assert_eq!(probe(&url, Duration::from_secs(5)), Ok(200));
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /readyz HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
    }

    #[test]
    fn a_503_fails_with_its_status_line() {
        let (port, h) = serve_once("HTTP/1.1 503 Service Unavailable");
        let err = probe(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ProbeError::Status("HTTP/1.1 503 Service Unavailable".into())
        );
        h.join().unwrap();
    }

    #[test]
    fn nothing_listening_is_unreachable() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = probe(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(matches!(err, ProbeError::Unreachable(_)), "{err:?}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // Accepts (the kernel does) but never answers.
        let err = probe(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, ProbeError::Unreachable(_)), "{err:?}");
        drop(l);
    }

    #[test]
    fn urls_other_than_plain_http_are_refused() {
        for bad in [
            "https://127.0.0.1:9464/readyz",
            "127.0.0.1:9464",
            "http:///x",
            "http://user@host/",
        ] {
            assert!(
                matches!(
                    probe(bad, Duration::from_secs(1)),
                    Err(ProbeError::BadUrl(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            split_url("http://[::1]/x").unwrap(),
            ("[::1]:80".into(), "[::1]".into(), "/x".into())
        );
        assert_eq!(
            split_url("http://nats:8222").unwrap(),
            ("nats:8222".into(), "nats:8222".into(), "/".into())
        );
    }
}
