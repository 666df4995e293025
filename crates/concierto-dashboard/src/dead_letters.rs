//! Dead letters: what the bus gave up on (stream `DEADLETTER`), listed,
//! inspected and replayed, over [`concierto_admin::dead_letters`] (the admin
//! API's rules: everyone signed in reads, admins replay).
//!
//! ```text
//!  GET  /dead-letters?subject=<prefix>&page=<token>   a page of 50, oldest first
//!  GET  /dead-letters/{seq}                            one letter: subject, reason, deliveries,
//!                                                      headers, payload decoded when its type is known
//!  POST /dead-letters/{seq}/replay                     admins, CSRF-checked: published again on
//!                                                      its subject and removed ─▶ 303 to the list
//! ```
//!
//! A payload's type is the letter's `expected_type`, else its `content-type`
//! header's `proto=`, else the one its subject carries (`task.<role>` is a
//! `Task`, ...). It is shown as the decoded message, at most
//! [`MAX_TEXT`] bytes of it; a payload of no known type, or one that does not
//! decode, as escaped text or a hex dump of its first bytes. Every text is
//! escaped.

use std::fmt::{self, Write as _};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use concierto_admin::dead_letters;
use concierto_bus::{BusError, ProtoMessage};
use concierto_proto::v1;
use serde::Deserialize;

use crate::DashboardState;
use crate::auth::{Authed, check_csrf};
use crate::html::{esc, page, refusal_box, when_in};
use crate::services::Refusal;

/// Letters per page.
const PAGE: u32 = 50;
/// Most bytes of a decoded payload shown.
pub(crate) const MAX_TEXT: usize = 16 * 1024;
/// Most bytes of an undecoded payload shown.
const MAX_RAW: usize = 1024;

/// A `fmt::Write` that keeps at most `limit` bytes and then refuses more
/// (so formatting a huge message stops early).
struct Bounded {
    out: String,
    limit: usize,
    cut: bool,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.out.len());
        if s.len() <= room {
            self.out.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while end > 0 && !s.is_char_boundary(end) {
            end -= 1;
        }
        self.out.push_str(&s[..end]);
        self.cut = true;
        Err(fmt::Error)
    }
}

/// `{:#?}` of `m`, at most `limit` bytes (`…` when cut).
fn bounded_debug(m: &dyn fmt::Debug, limit: usize) -> String {
    let mut b = Bounded {
        out: String::new(),
        limit,
        cut: false,
    };
    let _ = write!(b, "{m:#?}");
    if b.cut {
        b.out.push_str("\n… (cut)");
    }
    b.out
}

type Render = fn(&[u8]) -> Option<String>;

fn decoded<M: ProtoMessage + fmt::Debug>(bytes: &[u8]) -> Option<String> {
    M::decode(bytes).ok().map(|m| bounded_debug(&m, MAX_TEXT))
}

/// The message types dead letters may hold, by full name.
const TYPES: &[(&str, Render)] = &[
    ("concierto.v1.StartRun", decoded::<v1::StartRun>),
    ("concierto.v1.Task", decoded::<v1::Task>),
    ("concierto.v1.TaskResult", decoded::<v1::TaskResult>),
    ("concierto.v1.RunEvent", decoded::<v1::RunEvent>),
    ("concierto.v1.RunFailed", decoded::<v1::RunFailed>),
    ("concierto.v1.Gate", decoded::<v1::Gate>),
    (
        "concierto.v1.ThresholdCrossed",
        decoded::<v1::ThresholdCrossed>,
    ),
    ("concierto.v1.BudgetReached", decoded::<v1::BudgetReached>),
    ("concierto.v1.ContentItem", decoded::<v1::ContentItem>),
    ("concierto.v1.AgentContext", decoded::<v1::AgentContext>),
    ("concierto.v1.MetricSample", decoded::<v1::MetricSample>),
    ("concierto.v1.Feedback", decoded::<v1::Feedback>),
    ("concierto.v1.Deliverable", decoded::<v1::Deliverable>),
    ("concierto.v1.PublishOutcome", decoded::<v1::PublishOutcome>),
];

/// The type a subject's messages have (most specific prefix first).
const BY_SUBJECT: &[(&str, &str)] = &[
    ("run.start", "concierto.v1.StartRun"),
    ("run.event.", "concierto.v1.RunEvent"),
    ("task.", "concierto.v1.Task"),
    ("result.", "concierto.v1.TaskResult"),
    ("event.run.failed", "concierto.v1.RunFailed"),
    ("event.gate.", "concierto.v1.Gate"),
    ("event.metric.", "concierto.v1.ThresholdCrossed"),
    ("event.budget.", "concierto.v1.BudgetReached"),
    ("event.deliverable.", "concierto.v1.PublishOutcome"),
    ("content.ingested.", "concierto.v1.ContentItem"),
    ("context.", "concierto.v1.AgentContext"),
    ("metric.", "concierto.v1.MetricSample"),
    ("feedback.in.", "concierto.v1.Feedback"),
    ("deliverable.", "concierto.v1.Deliverable"),
];

/// The payload's type name, when the letter says or its subject tells.
pub(crate) fn type_of(letter: &v1::DeadLetter) -> Option<String> {
    if !letter.expected_type.is_empty() {
        return Some(letter.expected_type.clone());
    }
    let from_header = letter
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(concierto_bus::CONTENT_TYPE))
        .and_then(|(_, v)| v.split("proto=").nth(1))
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_string())
        .filter(|t| !t.is_empty());
    if from_header.is_some() {
        return from_header;
    }
    BY_SUBJECT
        .iter()
        .find(|(p, _)| letter.subject.starts_with(p))
        .map(|(_, t)| t.to_string())
}

/// The payload as HTML: decoded when its type is known and it decodes, else
/// a bounded escaped preview.
pub(crate) fn payload_html(letter: &v1::DeadLetter) -> String {
    let bytes = &letter.payload;
    let ty = type_of(letter);
    let render = ty
        .as_deref()
        .and_then(|t| TYPES.iter().find(|(n, _)| *n == t))
        .map(|(_, r)| *r);
    if let (Some(t), Some(render)) = (&ty, render)
        && let Some(text) = render(bytes)
    {
        return format!(
            "<p class=\"muted\">{} bytes, decoded as <code>{}</code>:</p><pre class=\"payload\" id=\"payload\" data-decoded=\"{}\">{}</pre>",
            bytes.len(),
            esc(t),
            esc(t),
            esc(&text)
        );
    }
    let why = match (&ty, render) {
        (Some(t), Some(_)) => format!("does not decode as {t}"),
        (Some(t), None) => format!("of type {t}, which this page does not know"),
        (None, _) => "of no known type".to_string(),
    };
    let head = &bytes[..bytes.len().min(MAX_RAW)];
    let more = if bytes.len() > MAX_RAW {
        format!(" (the first {MAX_RAW} shown)")
    } else {
        String::new()
    };
    match std::str::from_utf8(head) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => format!(
            "<p class=\"muted\">{} bytes {}, as text{more}:</p><pre class=\"payload\" id=\"payload\" data-raw=\"text\">{}</pre>",
            bytes.len(),
            esc(&why),
            esc(text)
        ),
        _ => {
            let mut dump = String::with_capacity(head.len() * 4);
            for (i, chunk) in head.chunks(16).enumerate() {
                let hexes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                let text: String = chunk
                    .iter()
                    .map(|b| {
                        if b.is_ascii_graphic() || *b == b' ' {
                            *b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                let _ = writeln!(dump, "{:08x}  {:<47}  {text}", i * 16, hexes.join(" "));
            }
            format!(
                "<p class=\"muted\">{} bytes {}, in hex{more}:</p><pre class=\"payload\" id=\"payload\" data-raw=\"hex\">{}</pre>",
                bytes.len(),
                esc(&why),
                esc(&dump)
            )
        }
    }
}

fn refusal(s: &tonic::Status) -> Refusal {
    let status = match s.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    Refusal::new(status, s.message().to_string())
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ListQuery {
    subject: String,
    page: String,
    replayed: String,
}

fn query(subject: &str, page: &str) -> String {
    let mut q: Vec<(&str, &str)> = Vec::new();
    if !subject.is_empty() {
        q.push(("subject", subject));
    }
    if !page.is_empty() {
        q.push(("page", page));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", serde_urlencoded::to_string(q).unwrap_or_default())
    }
}

/// `GET /dead-letters`: a page of letters, filtered by subject prefix.
pub(crate) async fn list(
    State(state): State<DashboardState>,
    who: Authed,
    Query(q): Query<ListQuery>,
) -> Response {
    let subject: String = q.subject.trim().chars().take(200).collect();
    let page_token: String = q.page.chars().take(40).collect();
    let listed = dead_letters::list(
        state.bus(),
        &v1::ListDeadLettersRequest {
            subject_prefix: subject.clone(),
            page_size: PAGE,
            page_token: page_token.clone(),
        },
    )
    .await
    .map_err(|s| refusal(&s));
    let replayed = q
        .replayed
        .parse::<u64>()
        .ok()
        .map(|seq| {
            format!(
                "<p class=\"notice\" id=\"replayed\" data-replayed=\"{seq}\">Dead letter {seq} was published again and removed.</p>"
            )
        })
        .unwrap_or_default();
    let filter = format!(
        "<form method=\"get\" action=\"/dead-letters\" class=\"filter\" id=\"dead-letter-filter\">\
<label>Subject starts with <input type=\"search\" name=\"subject\" value=\"{}\" placeholder=\"task., run.start\"></label>\
<button type=\"submit\">Filter</button></form>",
        esc(&subject)
    );
    let tz = state.studio().studio.timezone;
    let (status, inner) = match listed {
        Ok(l) if l.dead_letters.is_empty() => (
            StatusCode::OK,
            format!(
                "<p class=\"muted\" id=\"no-dead-letters\">No dead letter{}.</p>",
                if subject.is_empty() {
                    String::new()
                } else {
                    format!(" on a subject starting with {}", esc(&subject))
                }
            ),
        ),
        Ok(l) => {
            let rows: String = l
                .dead_letters
                .iter()
                .map(|e| {
                    let d = e.letter.clone().unwrap_or_default();
                    format!(
                        "<tr data-dead-letter=\"{seq}\" data-subject=\"{subject}\"><td><a href=\"/dead-letters/{seq}\" class=\"dead-letter-link\">{seq}</a></td>\
<td><code>{subject}</code></td><td>{reason}</td><td class=\"num\">{deliveries}</td><td>{at}</td><td>{consumer}</td></tr>",
                        seq = e.sequence,
                        subject = esc(&d.subject),
                        reason = esc(&cut(&d.reason, 200)),
                        deliveries = d.deliveries,
                        at = when_in(d.dead_lettered_at.as_ref(), tz),
                        consumer = esc(&d.consumer),
                    )
                })
                .collect();
            let next = if l.next_page_token.is_empty() {
                String::new()
            } else {
                format!(
                    "<a href=\"/dead-letters{}\" id=\"next-page\" rel=\"next\">Next page</a>",
                    esc(&query(&subject, &l.next_page_token))
                )
            };
            let first = if page_token.is_empty() {
                String::new()
            } else {
                format!(
                    "<a href=\"/dead-letters{}\" id=\"first-page\">First page</a> ",
                    esc(&query(&subject, ""))
                )
            };
            (
                StatusCode::OK,
                format!(
                    "<div class=\"scroll\"><table id=\"dead-letter-list\"><thead><tr><th>Seq</th><th>Subject</th><th>Reason</th><th>Deliveries</th><th>When</th><th>Consumer</th></tr></thead>\
<tbody>{rows}</tbody></table></div><p class=\"pager\">{first}{next}</p>"
                ),
            )
        }
        Err(r) => (r.status, refusal_box(&r)),
    };
    let body = format!(
        "{replayed}{filter}<section id=\"dead-letters-list\">{inner}</section>\
<p class=\"muted\">Messages the bus gave up on: a payload that did not decode, a handler's final error, or too many deliveries. \
{}</p>",
        if who.identity.is_admin() {
            "Replaying one publishes it again on its subject and removes it."
        } else {
            "Admins can replay them."
        }
    );
    page(&state, &who, status, "Dead letters", "/dead-letters", &body)
}

/// The letter with sequence `seq`.
async fn fetch(state: &DashboardState, seq: u64) -> Result<v1::DeadLetter, Refusal> {
    let found = state
        .bus()
        .stream_messages(dead_letters::STREAM, seq, 1)
        .await
        .map_err(|e| match e {
            BusError::NotFound(_) => Refusal::new(
                StatusCode::NOT_FOUND,
                "no dead-letter stream: nothing was dead-lettered on this bus yet",
            ),
            other => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, format!("bus: {other}")),
        })?
        .into_iter()
        .find(|(s, _)| *s == seq);
    let Some((_, m)) = found else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no dead letter {seq} (replayed or removed?)"),
        ));
    };
    concierto_bus::decode::<v1::DeadLetter>(&m).map_err(|e| {
        Refusal::new(
            StatusCode::CONFLICT,
            format!("dead letter {seq} does not decode: {e}"),
        )
    })
}

fn letter_page(
    state: &DashboardState,
    who: &Authed,
    seq: u64,
    letter: &v1::DeadLetter,
    notice: Option<&Refusal>,
) -> Response {
    let status = notice.map(|r| r.status).unwrap_or(StatusCode::OK);
    let notice = notice
        .map(|r| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"refusal\">Refused: {}</p>",
                esc(&r.message)
            )
        })
        .unwrap_or_default();
    let mut headers: Vec<(&String, &String)> = letter.headers.iter().collect();
    headers.sort();
    let headers: String = headers
        .iter()
        .take(100)
        .map(|(k, v)| {
            format!(
                "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
                esc(&cut(k, 200)),
                esc(&cut(v, 1000))
            )
        })
        .collect();
    let replay = if who.identity.is_admin() {
        format!(
            "<form method=\"post\" action=\"/dead-letters/{seq}/replay\" id=\"replay-form\" class=\"replay\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\" id=\"replay\" class=\"approve\" data-replay=\"{seq}\">Replay</button> \
<span class=\"muted\">publishes it again on <code>{subject}</code> and removes it from the dead letters</span></form>",
            csrf = esc(&who.csrf),
            subject = esc(&letter.subject),
        )
    } else {
        "<p class=\"muted\" id=\"replay-admins\">Only admins can replay a dead letter.</p>".into()
    };
    let body = format!(
        "<p><a href=\"/dead-letters\">← Dead letters</a></p>{notice}\
<section id=\"dead-letter\" data-dead-letter=\"{seq}\"><dl class=\"stats\"><dt>Sequence</dt><dd>{seq}</dd>\
<dt>Subject</dt><dd id=\"dead-letter-subject\"><code>{subject}</code></dd><dt>Reason</dt><dd id=\"dead-letter-reason\">{reason}</dd>\
<dt>Deliveries</dt><dd>{deliveries}</dd><dt>Consumer</dt><dd>{consumer}</dd><dt>Dead-lettered</dt><dd>{at}</dd></dl>\
{replay}<h2>Payload</h2>{payload}<h2>Headers</h2><div class=\"scroll\"><table class=\"headers\"><tbody>{headers}</tbody></table></div></section>",
        subject = esc(&letter.subject),
        reason = esc(&cut(&letter.reason, 4000)),
        deliveries = letter.deliveries,
        consumer = esc(&letter.consumer),
        at = when_in(
            letter.dead_lettered_at.as_ref(),
            state.studio().studio.timezone
        ),
        payload = payload_html(letter),
    );
    page(
        state,
        who,
        status,
        &format!("Dead letter {seq}"),
        "/dead-letters",
        &body,
    )
}

fn parse_seq(s: &str) -> Result<u64, Refusal> {
    s.parse::<u64>().map_err(|_| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            format!(
                "no dead letter {:?}: a dead letter is named by its sequence number",
                cut(s, 40)
            ),
        )
    })
}

/// `GET /dead-letters/{seq}`: one letter.
pub(crate) async fn show(
    State(state): State<DashboardState>,
    who: Authed,
    Path(seq): Path<String>,
) -> Response {
    let found = match parse_seq(&seq) {
        Ok(n) => fetch(&state, n).await.map(|l| (n, l)),
        Err(r) => Err(r),
    };
    match found {
        Ok((n, letter)) => letter_page(&state, &who, n, &letter, None),
        Err(r) => page(
            &state,
            &who,
            r.status,
            "Dead letter",
            "/dead-letters",
            &refusal_box(&r),
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CsrfForm {
    csrf: String,
}

/// `POST /dead-letters/{seq}/replay`: admins only (403 otherwise), CSRF-checked.
pub(crate) async fn replay(
    State(state): State<DashboardState>,
    who: Authed,
    Path(seq): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: CsrfForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Err(r) = check_csrf(&state, &headers, Some(&form.csrf)) {
        return r.into_response();
    }
    if !who.identity.is_admin() {
        tracing::info!(reviewer = %who.identity.id, "dead-letter replay refused: not an admin");
        return (
            StatusCode::FORBIDDEN,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            "refused: only admins replay dead letters",
        )
            .into_response();
    }
    let seq = match parse_seq(&seq) {
        Ok(n) => n,
        Err(r) => {
            return page(
                &state,
                &who,
                r.status,
                "Dead letter",
                "/dead-letters",
                &refusal_box(&r),
            );
        }
    };
    match dead_letters::replay(state.bus(), seq).await {
        Ok(r) => {
            tracing::info!(seq, subject = %r.subject, by = %who.identity.id, "dead letter replayed on the dashboard");
            Redirect::to(&format!("/dead-letters?replayed={seq}")).into_response()
        }
        Err(s) => {
            let r = refusal(&s);
            match fetch(&state, seq).await {
                Ok(letter) => letter_page(&state, &who, seq, &letter, Some(&r)),
                Err(_) => page(
                    &state,
                    &who,
                    r.status,
                    "Dead letter",
                    "/dead-letters",
                    &refusal_box(&r),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc<M: ProtoMessage>(m: &M) -> Vec<u8> {
        m.encode_to_vec()
    }

    fn letter(subject: &str, payload: Vec<u8>) -> v1::DeadLetter {
        v1::DeadLetter {
            subject: subject.into(),
            payload,
            ..Default::default()
        }
    }

    #[test]
    fn a_payload_is_decoded_by_its_subject_and_escaped() {
        let task = v1::Task {
            task_id: "t-1".into(),
            role: "<script>alert(1)</script>".into(),
            ..Default::default()
        };
        let html = payload_html(&letter("task.content-creator", enc(&task)));
        assert!(
            html.contains("data-decoded=\"concierto.v1.Task\""),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn an_unknown_or_broken_payload_is_a_bounded_escaped_preview() {
        let html = payload_html(&letter(
            "somewhere.else",
            b"<img src=x onerror=alert(1)>".to_vec(),
        ));
        assert!(html.contains("data-raw=\"text\""), "{html}");
        assert!(html.contains("&lt;img src=x"), "{html}");
        let big = vec![0xffu8; 1 << 20];
        let html = payload_html(&letter("task.x", big));
        assert!(
            html.contains("does not decode as concierto.v1.Task"),
            "{html}"
        );
        assert!(html.contains("data-raw=\"hex\""), "{html}");
        assert!(html.len() < 8 * MAX_RAW, "{}", html.len());
    }

    #[test]
    fn a_huge_decoded_payload_is_cut() {
        let task = v1::Task {
            instruction: "x".repeat(1 << 20),
            ..Default::default()
        };
        let html = payload_html(&letter("task.x", enc(&task)));
        assert!(html.contains("(cut)"), "{}", html.len());
        assert!(html.len() < MAX_TEXT + 1024, "{}", html.len());
    }

    #[test]
    fn the_type_comes_from_the_letter_then_the_header_then_the_subject() {
        let mut l = letter("task.x", Vec::new());
        assert_eq!(type_of(&l).as_deref(), Some("concierto.v1.Task"));
        l.headers.insert(
            "content-type".into(),
            "application/protobuf; proto=concierto.v1.StartRun".into(),
        );
        assert_eq!(type_of(&l).as_deref(), Some("concierto.v1.StartRun"));
        l.expected_type = "concierto.v1.Feedback".into();
        assert_eq!(type_of(&l).as_deref(), Some("concierto.v1.Feedback"));
        assert_eq!(type_of(&letter("nowhere", Vec::new())), None);
    }
}
