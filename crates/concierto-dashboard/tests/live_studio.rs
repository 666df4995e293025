//! A changed studio reaches a running dashboard (`ServiceHandle::
//! studio_changed`): a reviewer added with a token signs in at once, the
//! session of one removed is refused, and the overview lists the new studio's
//! metrics; over a real nats-server and a real socket.

use std::sync::Arc;

use concierto_admin::token_sha256;
use concierto_bus::{Bus, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_dashboard::{DashboardOptions, DashboardState};
use concierto_testkit::NatsServer;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};

const OPS: &str = "ops-token-dash-live-01";
const BRAND: &str = "brand-token-dash-live-02";
const NEWBIE: &str = "newbie-token-dash-live-03";

fn studio(dir: &std::path::Path, reviewers: &[(&str, &str)], metrics: &str) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let mut yaml = format!(
        "studio: {{ name: live, timezone: UTC }}\nagents:\n  paths: [\"{}\"]\nreviewers:\n",
        agents.display()
    );
    for (id, token) in reviewers {
        yaml.push_str(&format!(
            "  {id}: {{ name: \"{id}\", token_sha256: \"{}\" }}\n",
            token_sha256(token)
        ));
    }
    yaml.push_str(metrics);
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

/// A browser keeping its cookies.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(base: &str) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for c in r.headers().get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies.retain(|(n, _)| n != k);
                if !v.is_empty() {
                    self.cookies.push((k.to_string(), v.to_string()));
                }
            }
        }
    }

    fn cookie(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let status = r.status();
        let to = r
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, to, r.text().await.unwrap())
    }

    /// Signs in with `token`; the status of the answer.
    async fn sign_in(&mut self, token: &str) -> StatusCode {
        let (_, _, login) = self.get("/login").await;
        let csrf = login
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("the login page has a form token")
            .to_string();
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .header("cookie", self.cookie())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([
                    ("csrf", csrf.as_str()),
                    ("token", token),
                    ("next", "/"),
                ])
                .unwrap(),
            )
            .send()
            .await
            .unwrap();
        self.keep(&r);
        r.status()
    }
}

#[actix_rt::test]
async fn reviewers_and_metrics_of_a_changed_studio_apply_to_the_next_request() {
    let nats = NatsServer::start().expect("nats-server");
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let before = studio(d1.path(), &[("ops", OPS), ("brand_manager", BRAND)], "");
    let after = studio(
        d2.path(),
        &[("ops", OPS), ("newbie", NEWBIE)],
        "progress_metrics:\n  content_generation:\n    - daily_output:\n        target: 10\n        type: \"content_pieces\"\n        tracker: analytics-reporter\n",
    );
    let clock: SharedClock = Arc::new(SystemClock);
    let nobody = concierto_testkit::free_port().unwrap();
    let state = DashboardState::new(
        before,
        bus.clone(),
        clock,
        DashboardOptions {
            library_url: format!("http://127.0.0.1:{nobody}"),
            ..Default::default()
        },
    )
    .unwrap();
    let (handle, addr) = concierto_dashboard::serve(state, "127.0.0.1:0")
        .await
        .unwrap();
    assert!(handle.takes_studio_changes());
    let base = format!("http://{addr}");

    // As started: the brand manager signs in; the newcomer cannot.
    let mut brand = Browser::new(&base);
    assert_eq!(brand.sign_in(BRAND).await, StatusCode::SEE_OTHER);
    let (status, _, page) = brand.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("daily_output"), "no such metric yet");
    let mut newbie = Browser::new(&base);
    assert_eq!(newbie.sign_in(NEWBIE).await, StatusCode::UNAUTHORIZED);

    // The studio changes; no restart.
    assert!(handle.studio_changed(&after));

    // The brand manager's session no longer opens: back to the sign-in page.
    let (status, to, _) = brand.get("/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/login"), "{to}");
    assert_eq!(brand.sign_in(BRAND).await, StatusCode::UNAUTHORIZED);
    // The newcomer signs in, and the overview lists the new metric (the
    // tracker is not running: the studio's definitions are shown).
    assert_eq!(newbie.sign_in(NEWBIE).await, StatusCode::SEE_OTHER);
    let (status, _, page) = newbie.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("daily_output"), "{page}");

    handle.stop().await.unwrap();
    drop(nats);
}
