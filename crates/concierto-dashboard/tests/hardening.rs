//! The dashboard against hostile browsers and pages, over real sockets: the
//! security headers on every response, `Secure` cookies behind HTTPS, the
//! cap on live streams, and the library (its reads need a token) reached
//! through the proxy with the signed-in reviewer's token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use concierto_admin::token_sha256;
use concierto_bus::{Bus, EmbeddedBus};
use concierto_content::{ApiOptions, ContentLibrary, Kind, NewItem, TokenAuth};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::service::ServiceHandle;
use concierto_dashboard::{DashboardOptions, DashboardState};
use concierto_testkit::eventually;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};

const DIRECTOR: &str = "director-token-hard-0123";
const BRAND: &str = "brand-token-hard-4567";

fn studio(dir: &std::path::Path, extra: &str) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        "studio: {{ name: Hardening, timezone: UTC }}\nagents:\n  paths: [\"{agents}\"]\n\
reviewers:\n  creative_director: {{ name: \"Creative Director\", token_sha256: \"{d}\" }}\n  \
brand_manager: {{ name: \"Brand Manager\", token_sha256: \"{b}\" }}\n{extra}",
        agents = agents.display(),
        d = token_sha256(DIRECTOR),
        b = token_sha256(BRAND),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).expect("write studio");
    Arc::new(config::load_with_env(&path, Vec::new()).expect("the studio loads"))
}

async fn dashboard(st: Arc<Studio>, opts: DashboardOptions) -> (ServiceHandle, String) {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new("concierto."));
    let clock: SharedClock = Arc::new(SystemClock);
    let state = DashboardState::new(st, bus, clock, opts).expect("dashboard state");
    let (handle, addr) = concierto_dashboard::serve(state, "127.0.0.1:0")
        .await
        .expect("serve");
    (handle, format!("http://{addr}"))
}

/// A browser, as far as cookies go.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
    /// Every `Set-Cookie` seen, as sent.
    set_cookies: Vec<String>,
}

impl Browser {
    fn new(base: &str) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_string(),
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for c in headers.get_all(SET_COOKIE) {
            let c = c.to_str().expect("text").to_string();
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
            self.set_cookies.push(c);
        }
    }

    async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("send");
        let (status, headers) = (r.status(), r.headers().clone());
        self.keep(&headers);
        (status, headers, r.text().await.expect("body"))
    }

    async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, HeaderMap) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).expect("form"))
            .send()
            .await
            .expect("send");
        let (status, headers) = (r.status(), r.headers().clone());
        self.keep(&headers);
        (status, headers)
    }

    fn csrf_of(page: &str) -> String {
        page.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a form token")
            .to_string()
    }

    async fn sign_in(&mut self, token: &str) {
        let (_, _, login) = self.get("/login").await;
        let csrf = Self::csrf_of(&login);
        let (status, _) = self
            .post_form(
                "/login",
                &[("csrf", &csrf), ("token", token), ("next", "/")],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }

    /// Opens `GET /events`; the response is kept open by the caller.
    async fn events(&self) -> reqwest::Response {
        self.http
            .get(format!("{}/events", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("send")
    }
}

fn assert_hardened(path: &str, h: &HeaderMap) {
    assert_eq!(h["x-frame-options"], "DENY", "{path}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    assert_eq!(h["referrer-policy"], "same-origin", "{path}");
    let csp = h["content-security-policy"].to_str().expect("text");
    assert!(
        csp.contains("default-src 'self'") || csp.contains("default-src 'none'"),
        "{path}: {csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers_and_pages_need_no_inline_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, base) = dashboard(studio(dir.path(), ""), DashboardOptions::default()).await;
    let mut b = Browser::new(&base);
    for path in [
        "/healthz",
        "/login",
        "/",
        "/events",
        "/assets/dashboard.js",
        "/assets/dashboard.css",
        "/nowhere",
    ] {
        let (_, h, _) = b.get(path).await;
        assert_hardened(path, &h);
    }
    let (_, h, _) = b.get("/login").await;
    let csp = h["content-security-policy"].to_str().expect("text");
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }

    b.sign_in(DIRECTOR).await;
    for path in [
        "/",
        "/agents",
        "/queue",
        "/runs",
        "/gates",
        "/feedback",
        "/library",
        "/deliverables",
    ] {
        let (_, h, page) = b.get(path).await;
        assert_hardened(path, &h);
        // What the policy allows: the served script and style, no inline
        // script, handler or style attribute.
        assert!(
            page.contains("<script src=\"/assets/dashboard.js\""),
            "{path}"
        );
        assert!(!page.contains("<script>"), "{path}");
        assert!(!page.contains("<style"), "{path}");
        assert!(!page.contains(" style=\""), "{path}");
        assert!(!page.contains(" onclick="), "{path}");
    }
    // The library proxy's refusal too (nothing listens for the library here).
    let (status, h, _) = b.get("/library/api/items").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_hardened("/library/api/items", &h);
    handle.stop().await.expect("stop");
}

fn cookies_named<'a>(b: &'a Browser, name: &str) -> Vec<&'a str> {
    b.set_cookies
        .iter()
        .filter(|c| c.starts_with(&format!("{name}=")))
        .map(String::as_str)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_when_the_dashboard_is_served_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    // server.dashboard_secure_cookies: true, as behind a TLS-terminating proxy.
    let st = studio(dir.path(), "server: { dashboard_secure_cookies: true }\n");
    let opts = DashboardOptions::from_studio(&st);
    assert!(opts.secure_cookies);
    let (handle, base) = dashboard(st, opts).await;
    let mut b = Browser::new(&base);
    b.sign_in(BRAND).await;
    let (_, _, page) = b.get("/runs").await;
    let csrf = Browser::csrf_of(&page);
    let (status, _) = b.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let csrf_cookies = cookies_named(&b, "concierto_dashboard_csrf");
    let sessions = cookies_named(&b, "concierto_dashboard_session");
    assert!(
        !csrf_cookies.is_empty() && sessions.len() == 2,
        "{:?}",
        b.set_cookies
    );
    for c in csrf_cookies.iter().chain(&sessions) {
        assert!(c.ends_with("; Secure"), "{c}");
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }
    handle.stop().await.expect("stop");

    // Served over plain HTTP (the default): no Secure, or browsers would
    // never send the cookies back.
    let (handle, base) = dashboard(studio(dir.path(), ""), DashboardOptions::default()).await;
    let mut b = Browser::new(&base);
    b.sign_in(BRAND).await;
    assert!(!b.set_cookies.is_empty());
    for c in &b.set_cookies {
        assert!(!c.contains("Secure"), "{c}");
    }
    handle.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_capped_per_session_and_in_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DashboardOptions {
        max_streams: 6,
        ..DashboardOptions::default()
    };
    assert_eq!(opts.max_streams_per_session, 4);
    let (handle, base) = dashboard(studio(dir.path(), ""), opts).await;
    let mut one = Browser::new(&base);
    one.sign_in(DIRECTOR).await;

    // Four streams of one session are served, the fifth is 429.
    let mut open = Vec::new();
    for _ in 0..4 {
        let r = one.events().await;
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    let fifth = one.events().await;
    assert_eq!(fifth.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(fifth.headers().contains_key("retry-after"));
    let why = fifth.text().await.expect("body");
    assert!(why.contains("close other dashboard tabs"), "{why}");

    // Another session still gets its own, up to the total of six.
    let mut two = Browser::new(&base);
    two.sign_in(BRAND).await;
    for _ in 0..2 {
        let r = two.events().await;
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    let over = two.events().await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let why = over.text().await.expect("body");
    assert!(why.contains("6 live streams open"), "{why}");

    // A browser that leaves gives its place back.
    drop(open.remove(0));
    let again = eventually(
        Duration::from_secs(10),
        "a closed stream frees its place",
        || async {
            let r = one.events().await;
            (r.status() == StatusCode::OK).then_some(r)
        },
    )
    .await;
    assert_eq!(again.status(), StatusCode::OK);
    handle.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gallery_reads_a_library_that_needs_a_token_as_the_signed_in_reviewer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = studio(dir.path(), "");
    assert!(!st.server.library_public, "reads need a token by default");

    // The library's API as the ingest service serves it: reads need a token.
    let library = Arc::new(ContentLibrary::temporary().expect("library"));
    library
        .put(
            NewItem::new(Kind::Post, "feed", "riso")
                .title("Risograph poster")
                .text("Two inks on recycled paper."),
        )
        .expect("put");
    let identities = concierto_admin::identities(&st);
    let auth: TokenAuth = Arc::new(move |t: &str| identities.by_token(t).map(|i| i.id.clone()));
    let opts = ApiOptions::for_studio(&st);
    assert!(opts.read_requires_token);
    let app = concierto_content::router(library, auth, opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let library_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let plain = reqwest::get(format!("http://{library_addr}/api/items"))
        .await
        .expect("send");
    assert_eq!(
        plain.status(),
        StatusCode::UNAUTHORIZED,
        "no token, no read"
    );

    let (handle, base) = dashboard(
        st.clone(),
        DashboardOptions {
            library_url: format!("http://{library_addr}"),
            ..DashboardOptions::default()
        },
    )
    .await;
    let mut b = Browser::new(&base);
    b.sign_in(DIRECTOR).await;
    let (status, _, page) = b.get("/library").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Risograph poster"), "{page}");
    let (status, h, json) = b.get("/library/api/items?q=risograph").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(json.contains("\"total\":1"), "{json}");
    // What the library answers keeps the proxy's stricter policy.
    assert_hardened("/library/api/items", &h);
    assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");

    // A search that would overflow the query parser is a page saying so.
    let hostile: String = "%28".repeat(1000);
    let (status, _, page) = b.get(&format!("/library?q={hostile}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("limit of 8"), "{page}");
    let (status, _, page) = b.get("/library?q=risograph").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Risograph poster"));
    handle.stop().await.expect("stop");
}
