//! What the dashboard's HTTP tests share: a browser that keeps cookies by
//! hand (so each header is checked), and services played on the bus by
//! responders that record every request they answer.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use concierto_bus::{Bus, BusExt, Outgoing, ProtoMessage, encode};
use concierto_core::subjects;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};

/// A browser, as far as cookies go.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_string(),
            cookies: HashMap::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for c in headers.get_all(SET_COOKIE) {
            let c = c.to_str().expect("text");
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, String) {
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

    pub async fn post_form(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
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
        (status, headers, r.text().await.expect("body"))
    }

    /// The CSRF token a page carries in its forms.
    pub fn csrf_of(page: &str) -> String {
        page.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("the page has a form token")
            .to_string()
    }

    pub async fn sign_in(&mut self, token: &str) {
        let (_, _, login) = self.get("/login").await;
        assert!(login.contains("data-login-form"), "{login}");
        let csrf = Self::csrf_of(&login);
        let (status, headers, body) = self
            .post_form(
                "/login",
                &[("csrf", &csrf), ("token", token), ("next", "/")],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(headers[reqwest::header::LOCATION], "/");
    }
}

/// One request a responder answered: the message and the identity header.
pub type Seen<Q> = Arc<Mutex<Vec<(Q, Option<String>)>>>;

/// Plays a service on `subject`: every `Q` is recorded and answered with
/// `answer(q)`, an error (`"not_found: ..."`, as services send it in the
/// error header) or an `R`.
pub async fn respond<Q, R, F>(bus: &Arc<dyn Bus>, subject: &str, answer: F) -> Seen<Q>
where
    Q: ProtoMessage + Clone + Send + 'static,
    R: ProtoMessage + Send + 'static,
    F: Fn(&Q) -> Result<R, String> + Send + Sync + 'static,
{
    let seen: Seen<Q> = Arc::default();
    let mut sub = bus.subscribe_proto::<Q>(subject).await.expect("subscribe");
    let (to, log) = (bus.clone(), seen.clone());
    tokio::spawn(async move {
        let bus = to;
        while let Some((q, msg)) = sub.next().await {
            let who = msg
                .headers
                .get(subjects::IDENTITY_HEADER)
                .map(str::to_string);
            log.lock().expect("log").push((q.clone(), who));
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let out = match answer(&q) {
                Ok(r) => encode(&r),
                Err(e) => Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, e),
            };
            let _ = bus.respond(&reply, out).await;
        }
    });
    // The subscription is at the server before the test asks anything.
    bus.flush().await.expect("flush");
    seen
}

/// The requests `seen` holds now.
pub fn taken<Q: Clone>(seen: &Seen<Q>) -> Vec<(Q, Option<String>)> {
    seen.lock().expect("log").clone()
}
