//! The triggers page (`GET /triggers`): every trigger the scheduler runs
//! (`scheduler.triggers`) with its kind, schedule, workflow, next and last
//! fire in the studio's zone, fire and missed counts and whether it is
//! paused (by whom, since when); for admins, Fire now (`scheduler.fire`)
//! and Pause / Resume (`scheduler.pause`, `PauseTriggerRequest`), each with
//! the reviewer's id in the identity header.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use concierto_core::subjects;
use concierto_proto::v1;
use serde::Deserialize;

use crate::DashboardState;
use crate::actions::{WithCsrf, admin_form, csrf_field};
use crate::auth::Authed;
use crate::html::{self, esc, page, refusal_box, seg};
use crate::services::{Refusal, ask};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TriggersQuery {
    /// `paused`, `resumed` or `fired`: what was just done to `trigger`.
    done: String,
    trigger: String,
}

fn row(state: &DashboardState, who: &Authed, t: &v1::Trigger) -> String {
    let tz = state.studio().studio.timezone;
    let link = seg(&t.name);
    let paused = if t.paused {
        let by = if t.paused_by.is_empty() {
            String::new()
        } else {
            format!(" by {}", esc(&t.paused_by))
        };
        let at = if t.paused_at.is_some() {
            format!(" since {}", html::when_in(t.paused_at.as_ref(), tz))
        } else {
            String::new()
        };
        format!("<span class=\"badge st-paused\">paused</span>{by}{at}")
    } else {
        "<span class=\"badge st-active\">active</span>".to_string()
    };
    let buttons = if who.identity.is_admin() {
        let csrf = csrf_field(who);
        let toggle = if t.paused {
            format!(
                "<form method=\"post\" action=\"/triggers/{link}/pause\" class=\"inline\">{csrf}\
<input type=\"hidden\" name=\"paused\" value=\"false\">\
<button type=\"submit\" class=\"resume\" data-action=\"resume\">Resume</button></form>"
            )
        } else {
            format!(
                "<form method=\"post\" action=\"/triggers/{link}/pause\" class=\"inline\">{csrf}\
<input type=\"hidden\" name=\"paused\" value=\"true\">\
<button type=\"submit\" class=\"pause\" data-action=\"pause\">Pause</button></form>"
            )
        };
        format!(
            "<td class=\"actions\"><form method=\"post\" action=\"/triggers/{link}/fire\" class=\"inline\">{csrf}\
<button type=\"submit\" class=\"fire\" data-action=\"fire\">Fire now</button></form> {toggle}</td>"
        )
    } else {
        String::new()
    };
    // The trigger's own zone when it has one, else the studio's.
    let zone: chrono_tz::Tz = t.timezone.parse().unwrap_or(tz);
    format!(
        "<tr data-trigger=\"{name}\" data-paused=\"{p}\"><td>{name}</td><td>{kind}</td><td>{spec}</td>\
<td><a href=\"/runs?trigger={q}\">{wf}</a></td><td>{next}</td><td>{last}</td>\
<td class=\"num\">{fires}</td><td class=\"num\">{missed}</td><td class=\"trigger-state\">{paused}</td>{buttons}</tr>",
        name = esc(&t.name),
        p = t.paused,
        kind = esc(&t.kind),
        spec = esc(&t.spec),
        q = percent_encoding::utf8_percent_encode(&t.name, percent_encoding::NON_ALPHANUMERIC),
        wf = esc(&t.workflow),
        next = if t.paused {
            "<span class=\"muted\">paused</span>".to_string()
        } else {
            html::when_in(t.next_fire.as_ref(), zone)
        },
        last = html::when_in(t.last_fire.as_ref(), zone),
        fires = t.fires,
        missed = t.missed,
    )
}

async fn triggers_page(
    state: &DashboardState,
    who: &Authed,
    notice: Option<Refusal>,
    done: String,
) -> Response {
    let listed: Result<v1::ListTriggersResponse, Refusal> = ask(
        state,
        "scheduler",
        subjects::SCHEDULER_TRIGGERS,
        &v1::ListTriggersRequest::default(),
        None,
    )
    .await;
    let tz = state.studio().studio.timezone;
    let (status, inner) = match listed {
        Ok(t) if t.triggers.is_empty() => (
            StatusCode::OK,
            "<p class=\"muted\" id=\"no-triggers\">The studio has no trigger.</p>".to_string(),
        ),
        Ok(t) => {
            let rows: String = t.triggers.iter().map(|t| row(state, who, t)).collect();
            let actions = if who.identity.is_admin() {
                "<th></th>"
            } else {
                ""
            };
            (
                StatusCode::OK,
                format!(
                    "<table id=\"trigger-list\"><thead><tr><th>Trigger</th><th>Kind</th><th>When</th><th>Workflow</th>\
<th>Next fire</th><th>Last fire</th><th>Fires</th><th>Missed</th><th>State</th>{actions}</tr></thead><tbody>{rows}</tbody></table>\
<p class=\"muted\">Times in {zone} unless the trigger has its own zone.</p>",
                    zone = esc(tz.name()),
                ),
            )
        }
        Err(r) => (r.status, refusal_box(&r)),
    };
    let (status, notice) = match notice {
        Some(r) => (r.status, refusal_box(&r)),
        None => (status, done),
    };
    let body = format!("{notice}<section id=\"triggers\" data-live=\"run\">{inner}</section>");
    page(state, who, status, "Triggers", "/triggers", &body)
}

/// `GET /triggers`: every trigger, and what was just done to one.
pub(crate) async fn list(
    State(state): State<DashboardState>,
    who: Authed,
    Query(q): Query<TriggersQuery>,
) -> Response {
    let done = match q.done.as_str() {
        "paused" | "resumed" | "fired" if !q.trigger.is_empty() => format!(
            "<p class=\"notice\" id=\"trigger-done\">Trigger <strong>{}</strong> {}.</p>",
            esc(&q.trigger.chars().take(200).collect::<String>()),
            q.done
        ),
        _ => String::new(),
    };
    triggers_page(&state, &who, None, done).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FireForm {
    csrf: String,
}

impl WithCsrf for FireForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /triggers/{name}/fire`: fires it now; shows the run it started.
pub(crate) async fn fire(
    State(state): State<DashboardState>,
    who: Authed,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) =
        admin_form::<FireForm>(&state, &who, &headers, &body, "fire triggers", "/triggers")
    {
        return *resp;
    }
    let fired: Result<v1::FireTriggerResponse, Refusal> = ask(
        &state,
        "scheduler",
        subjects::SCHEDULER_FIRE,
        &v1::FireTriggerRequest {
            name: name.clone(),
            priority: 0,
        },
        Some(&who.identity.id),
    )
    .await;
    match fired {
        Ok(r) => {
            tracing::info!(trigger = %name, run = %r.run_id, by = %who.identity.id, "trigger fired on the dashboard");
            if r.run_id.is_empty() {
                Redirect::to(&format!("/triggers?done=fired&trigger={}", seg(&name)))
                    .into_response()
            } else {
                Redirect::to(&format!("/runs/{}?started=1", seg(&r.run_id))).into_response()
            }
        }
        Err(r) => triggers_page(&state, &who, Some(r), String::new()).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PauseForm {
    csrf: String,
    /// `true` to pause, `false` to resume.
    paused: String,
}

impl WithCsrf for PauseForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /triggers/{name}/pause` with `paused=true|false`: pauses or resumes it.
pub(crate) async fn pause(
    State(state): State<DashboardState>,
    who: Authed,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: PauseForm = match admin_form(
        &state,
        &who,
        &headers,
        &body,
        "pause or resume triggers",
        "/triggers",
    ) {
        Ok(f) => f,
        Err(resp) => return *resp,
    };
    let paused = match form.paused.as_str() {
        "true" => true,
        "false" => false,
        other => {
            let r = Refusal::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "paused {:?}: true or false",
                    other.chars().take(20).collect::<String>()
                ),
            );
            return triggers_page(&state, &who, Some(r), String::new()).await;
        }
    };
    let done: Result<v1::PauseTriggerResponse, Refusal> = ask(
        &state,
        "scheduler",
        subjects::SCHEDULER_PAUSE,
        &v1::PauseTriggerRequest {
            name: name.clone(),
            paused,
            requested_by: who.identity.id.clone(),
        },
        Some(&who.identity.id),
    )
    .await;
    match done {
        Ok(_) => {
            tracing::info!(trigger = %name, paused, by = %who.identity.id, "trigger paused state set on the dashboard");
            Redirect::to(&format!(
                "/triggers?done={}&trigger={}",
                if paused { "paused" } else { "resumed" },
                seg(&name)
            ))
            .into_response()
        }
        Err(r) => triggers_page(&state, &who, Some(r), String::new()).await,
    }
}

#[cfg(test)]
mod tests {
    use crate::html::when_in;

    #[test]
    fn times_are_shown_in_the_zone_with_its_label() {
        let t = prost_types::Timestamp {
            // 2026-03-10 08:00:00 UTC
            seconds: 1_773_129_600,
            nanos: 0,
        };
        let out = when_in(Some(&t), chrono_tz::Europe::Madrid);
        assert!(out.contains("datetime=\"2026-03-10T08:00:00Z\""), "{out}");
        assert!(out.contains("title=\"Europe/Madrid\""), "{out}");
        assert!(out.contains(">2026-03-10 09:00:00 CET<"), "{out}");
        let summer = prost_types::Timestamp {
            seconds: 1_773_129_600 + 120 * 86_400,
            nanos: 0,
        };
        assert!(
            when_in(Some(&summer), chrono_tz::Europe::Madrid).contains(" 10:00:00 CEST<"),
            "daylight saving is followed"
        );
        assert_eq!(when_in(None, chrono_tz::UTC), "–");
    }
}
