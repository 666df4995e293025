//! A scripted HTTP server for the model executor tests: an axum server on
//! `127.0.0.1:0` that records every request (path, headers, JSON body, arrival
//! time) and answers each with the next scripted reply (the last one again
//! once the script runs out). Stopped when dropped.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use concierto_core::config::{ExecutorDef, ExecutorKind, Prices};
use concierto_core::roles::RoleDef;
use concierto_proto::v1::{Task, TaskInput};
use serde_json::Value;

/// Key variables the tests read; set once per process by [`test_env`].
pub const OPENAI_KEY_VAR: &str = "CONCIERTO_TEST_OPENAI_KEY";
pub const OPENAI_KEY: &str = "sk-test-0penai-KEY-7f3a9c";
pub const ANTHROPIC_KEY_VAR: &str = "CONCIERTO_TEST_ANTHROPIC_KEY";
pub const ANTHROPIC_KEY: &str = "sk-ant-test-KEY-91b2e4";
/// A variable no test sets.
pub const UNSET_VAR: &str = "CONCIERTO_TEST_KEY_THAT_IS_NOT_SET";

/// Sets the key variables, once per test process.
pub fn test_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: done once, first thing in each test that needs it; nextest
        // runs every test in a process of its own, and no test of these
        // binaries reads these variables before this runs.
        unsafe {
            std::env::set_var(OPENAI_KEY_VAR, OPENAI_KEY);
            std::env::set_var(ANTHROPIC_KEY_VAR, ANTHROPIC_KEY);
            std::env::remove_var(UNSET_VAR);
        }
    });
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Waits this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// With a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answering after `d`.
    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Received {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
}

/// The server. Dropping it stops it.
pub struct MockServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Starts a server answering with `script`, in order.
    pub async fn start(script: Vec<Reply>) -> MockServer {
        assert!(!script.is_empty(), "a script needs at least one reply");
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("mock server");
        });
        MockServer {
            url: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// The number of requests received so far.
    pub fn count(&self) -> usize {
        self.shared.received.lock().expect("lock").len()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.received.lock().expect("lock").push(Received {
        at: Instant::now(),
        path: uri.path().to_string(),
        headers,
        body,
    });
    let reply = {
        let mut script = shared.script.lock().expect("lock");
        if script.len() > 1 {
            script.pop_front().expect("a reply")
        } else {
            script.front().cloned().expect("a reply")
        }
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut h = HeaderMap::new();
    for (k, v) in &reply.headers {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    let status = StatusCode::from_u16(reply.status).expect("status");
    (status, h, reply.body).into_response()
}

/// A port nothing listens on (bound, then released).
pub async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// An executor definition of `kind` pointing at `url`.
pub fn def(kind: ExecutorKind, name: &str, url: &str) -> ExecutorDef {
    let mut d = ExecutorDef::new(name, kind);
    d.base_url = Some(url.to_string());
    d
}

/// Prices used by the cost assertions: $2 and $8 per million tokens.
pub fn prices() -> Prices {
    Prices {
        input_per_mtok: 2.0,
        output_per_mtok: 8.0,
    }
}

/// The role the tests run as.
pub fn role(model: Option<&str>) -> RoleDef {
    RoleDef {
        name: "content-creator".into(),
        description: "Writes posts.".into(),
        tools: Vec::new(),
        model: model.map(str::to_string),
        executor: None,
        color: None,
        prompt: "You are the studio's content creator. Write warm, concrete posts.".into(),
        file: PathBuf::from("agents/content-creator.md"),
        line: 2,
    }
}

/// A 1×1 PNG, base64.
pub const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// A task with a text input, an image URL and a base64 image.
pub fn task() -> Task {
    Task {
        task_id: "run-7/draft/1".into(),
        run_id: "run-7".into(),
        step_id: "draft".into(),
        attempt: 1,
        role: "content-creator".into(),
        workflow: "daily".into(),
        instruction: "Write a post about refillable glass jars.".into(),
        inputs: vec![
            TaskInput {
                name: "trigger".into(),
                content: "Refill stations doubled in Lisbon this year.".into(),
                content_type: "text/plain".into(),
            },
            TaskInput {
                name: "moodboard".into(),
                content: "https://images.example/jars.png".into(),
                content_type: "image/png".into(),
            },
            TaskInput {
                name: "logo".into(),
                content: PNG_BASE64.into(),
                content_type: "image/png".into(),
            },
        ],
        labels: vec!["campaign_launch".into()],
        ..Default::default()
    }
}

/// A text-only task.
pub fn text_task(instruction: &str) -> Task {
    Task {
        task_id: "run-8/brief/2".into(),
        run_id: "run-8".into(),
        step_id: "brief".into(),
        attempt: 2,
        instruction: instruction.into(),
        ..Default::default()
    }
}

/// Details as `key=value` lines, for messages.
pub fn show(details: &BTreeMap<String, String>) -> String {
    details
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A shared buffer a tracing subscriber writes into.
#[derive(Clone, Default)]
pub struct LogBuffer(pub Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs, for the whole test process, a subscriber that records every
/// event at TRACE (and `log` records, through the subscriber's log bridge)
/// into the returned buffer.
pub fn capture_logs() -> LogBuffer {
    use tracing_subscriber::util::SubscriberInitExt;
    let buf = LogBuffer::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(buf.clone())
        .finish()
        .try_init()
        .expect("no other global subscriber in this test process");
    buf
}

/// Asserts `needle` is nowhere in `haystack`, naming where.
pub fn assert_absent(needle: &str, haystack: &str, where_: &str) {
    let lines: Vec<&str> = haystack.lines().filter(|l| l.contains(needle)).collect();
    assert!(
        lines.is_empty(),
        "the key appears in {where_}, on {} line(s)",
        lines.len()
    );
}

/// A raw HTTP/1.1 server that answers every request with `status` and `body`,
/// written in 1 MiB pieces: chunked (no `Content-Length`, so the client cannot
/// know the size before it reads) or with a `Content-Length`. It counts the
/// requests it answered. Stopped when dropped.
pub struct StreamingServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StreamingServer {
    /// Starts it.
    pub async fn start(status: u16, body: Vec<u8>, chunked: bool) -> StreamingServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let body = Arc::new(body);
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let body = body.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    // The request: headers, then Content-Length bytes of body.
                    let mut got = Vec::new();
                    let mut buf = [0u8; 8192];
                    let header_end = loop {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&got[..header_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while got.len() < header_end + length {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let framing = if chunked {
                        "Transfer-Encoding: chunked".to_string()
                    } else {
                        format!("Content-Length: {}", body.len())
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
                    );
                    if conn.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for piece in body.chunks(1024 * 1024) {
                        let written = if chunked {
                            let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
                            framed.extend_from_slice(piece);
                            framed.extend_from_slice(b"\r\n");
                            conn.write_all(&framed).await
                        } else {
                            conn.write_all(piece).await
                        };
                        if written.is_err() {
                            // The client stopped reading: as expected.
                            return;
                        }
                    }
                    if chunked {
                        let _ = conn.write_all(b"0\r\n\r\n").await;
                    }
                    let _ = conn.shutdown().await;
                });
            }
        });
        StreamingServer {
            url: format!("http://{addr}"),
            requests,
            task,
        }
    }

    /// Requests answered so far.
    pub fn count(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// 20 MiB: more than the executors read of an answer.
pub const HUGE: usize = 20 * 1024 * 1024;

/// A JSON body of about `size` bytes: `prefix`, then `size` letters inside a
/// string, then `suffix` (a valid answer, were it read whole).
pub fn huge_json(prefix: &str, size: usize, suffix: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(prefix.len() + size + suffix.len());
    body.extend_from_slice(prefix.as_bytes());
    body.resize(prefix.len() + size, b'a');
    body.extend_from_slice(suffix.as_bytes());
    body
}
