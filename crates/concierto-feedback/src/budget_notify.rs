//! Budget notifications on Slack: a `concierto.v1.BudgetReached` published by
//! the orchestrator on `event.budget.<scope>` becomes a direct message to each
//! reviewer it names (`agents.budget_owner`), sent with the gate notifier's
//! Slack client (its token, retries and bounds).
//!
//! ```text
//!  event.budget.day ─▶ each owner: "The day's budget is spent: $25.0000 of $25.0000
//!                                   (agents.budget.per_day_usd) on 2026-12-06.
//!                                   New work is paused until 00:00 UTC."
//!  event.budget.run ─▶ each owner: "Run … stopped at its budget: …"
//! ```
//!
//! Queue group [`NOTIFIER_GROUP`]: one feedback replica sends each event.

use concierto_bus::BusExt;
use concierto_core::service::ServiceHandle;
use concierto_core::subjects;
use concierto_proto::v1;

use crate::FeedbackError;
use crate::notify::{NOTIFIER_GROUP, Notification, Notifier};

/// Longest name (limit key, run id, workflow) quoted in a message.
const MAX_NAME_CHARS: usize = 200;

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_NAME_CHARS).collect();
    if s.chars().count() > MAX_NAME_CHARS {
        out.push('…');
    }
    // Slack mrkdwn: no links or mentions from names.
    out.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The text the owners get for `ev`.
pub fn budget_text(ev: &v1::BudgetReached) -> String {
    let amount = format!(
        "${:.4} of ${:.4} (`{}`)",
        ev.spent_usd,
        ev.limit_usd,
        short(&ev.limit)
    );
    match ev.scope.as_str() {
        "day" => format!(
            "The day's budget is spent: {amount} on {}. New work is paused until 00:00 UTC (or until the limit is raised).",
            short(&ev.day)
        ),
        _ => format!(
            "Run `{}` of {} stopped at its budget: {amount}; the step of {} was not started.",
            short(&ev.run_id),
            short(&ev.workflow),
            short(&ev.role)
        ),
    }
}

/// Who is told about `ev`: one message per owner, each once.
pub fn budget_messages(notifier: &Notifier, ev: &v1::BudgetReached) -> Vec<Notification> {
    let text = budget_text(ev);
    let mut seen: Vec<&str> = Vec::new();
    ev.owners
        .iter()
        .filter(|o| {
            let new = !o.is_empty() && !seen.contains(&o.as_str());
            if new {
                seen.push(o);
            }
            new
        })
        .map(|o| notifier.to_person(o, text.clone()))
        .collect()
}

/// Subscribes to `event.budget.>` (before returning) and sends each event's
/// messages until stopped.
pub async fn start(notifier: Notifier) -> Result<ServiceHandle, FeedbackError> {
    let mut sub = notifier
        .bus()
        .queue_subscribe_proto::<v1::BudgetReached>(subjects::BUDGET_EVENTS, NOTIFIER_GROUP)
        .await?;
    let (handle, control) = ServiceHandle::new("budget-notifier");
    let mut signal = control.signal.clone();
    tokio::spawn(async move {
        let result = loop {
            let ev = tokio::select! {
                _ = signal.stopped() => break Ok(()),
                next = sub.next() => match next {
                    Some((ev, _)) => ev,
                    None => break Err("the budget event subscription ended".to_string()),
                },
            };
            for n in budget_messages(&notifier, &ev) {
                let Some(channel) = &n.channel else {
                    tracing::debug!(person = %n.person, "no Slack id: budget not notified on Slack");
                    continue;
                };
                let sent = tokio::select! {
                    _ = signal.stopped() => break,
                    r = notifier.post(channel, &n.text) => r,
                };
                match sent {
                    Ok(()) => {
                        tracing::info!(person = %n.person, limit = %ev.limit, "budget notification sent on Slack")
                    }
                    Err(e) => {
                        tracing::warn!(person = %n.person, error = %e, "budget notification not sent on Slack")
                    }
                }
            }
        };
        control.finished(result);
    });
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_and_run_texts_name_the_limit_and_escape_names() {
        let day = v1::BudgetReached {
            scope: "day".into(),
            limit: "agents.budget.per_day_usd".into(),
            limit_usd: 25.0,
            spent_usd: 25.5,
            day: "2026-12-06".into(),
            ..Default::default()
        };
        let t = budget_text(&day);
        assert!(t.contains("$25.5000 of $25.0000"), "{t}");
        assert!(t.contains("agents.budget.per_day_usd"), "{t}");
        assert!(t.contains("paused until 00:00 UTC"), "{t}");
        let run = v1::BudgetReached {
            scope: "run".into(),
            limit: "agents.budget.per_run_usd".into(),
            run_id: "<!channel>".into(),
            workflow: "daily".into(),
            role: "writer".into(),
            ..Default::default()
        };
        let t = budget_text(&run);
        assert!(t.contains("&lt;!channel&gt;"), "{t}");
        assert!(!t.contains("<!channel>"), "{t}");
    }
}
