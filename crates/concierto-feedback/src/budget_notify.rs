//! Budget and target notifications on Slack: a `concierto.v1.BudgetReached`
//! published by the orchestrator on `event.budget.<scope>` becomes a direct
//! message to each reviewer it names (`agents.budget_owner`), and a
//! `concierto.v1.OffTarget` published by the scheduler on `event.target.<metric>`
//! one to each reviewer of its metric's `on_off_target.notify`; both are sent
//! with the gate notifier's Slack client (its token, retries and bounds).
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

/// The text the reviewers of `ev` get.
pub fn target_text(ev: &v1::OffTarget) -> String {
    let c = ev.crossed.clone().unwrap_or_default();
    let mut out = format!(
        "Metric `{}` is off target: {} (value {}; target {}).",
        short(&c.metric),
        short(&c.predicate),
        c.value,
        short(&ev.target)
    );
    if !ev.workflow.is_empty() {
        out.push_str(&format!(
            " Started {} as run `{}`.",
            short(&ev.workflow),
            short(&ev.run_id)
        ));
    }
    out
}

/// Who is told about `ev`: one message per owner, each once.
pub fn budget_messages(notifier: &Notifier, ev: &v1::BudgetReached) -> Vec<Notification> {
    messages(notifier, &ev.owners, budget_text(ev))
}

/// One message of `text` per reviewer in `to`, each once.
fn messages(notifier: &Notifier, to: &[String], text: String) -> Vec<Notification> {
    let mut seen: Vec<&str> = Vec::new();
    to.iter()
        .filter(|o| {
            let new = !o.is_empty() && !seen.contains(&o.as_str());
            if new {
                seen.push(o);
            }
            new
        })
        .map(|o| notifier.to(o, text.clone()))
        .collect()
}

/// Subscribes to `event.budget.>` and `event.target.>` (before returning) and
/// sends each event's messages until stopped.
pub async fn start(notifier: Notifier) -> Result<ServiceHandle, FeedbackError> {
    let mut budgets = notifier
        .bus()
        .queue_subscribe_proto::<v1::BudgetReached>(subjects::BUDGET_EVENTS, NOTIFIER_GROUP)
        .await?;
    let mut targets = notifier
        .bus()
        .queue_subscribe_proto::<v1::OffTarget>(subjects::TARGET_EVENTS, NOTIFIER_GROUP)
        .await?;
    let (handle, control) = ServiceHandle::new("budget-and-target-notifier");
    let mut signal = control.signal.clone();
    tokio::spawn(async move {
        let result = loop {
            let batch = tokio::select! {
                _ = signal.stopped() => break Ok(()),
                next = budgets.next() => match next {
                    Some((ev, _)) => budget_messages(&notifier, &ev),
                    None => break Err("the budget event subscription ended".to_string()),
                },
                next = targets.next() => match next {
                    Some((ev, _)) => messages(&notifier, &ev.notify, target_text(&ev)),
                    None => break Err("the target event subscription ended".to_string()),
                },
            };
            for n in batch {
                let Some(channel) = &n.channel else {
                    tracing::debug!(person = %n.person, "no Slack id: not notified on Slack");
                    continue;
                };
                let sent = tokio::select! {
                    _ = signal.stopped() => break,
                    r = notifier.post(channel, &n.text) => r,
                };
                match sent {
                    Ok(()) => {
                        tracing::info!(person = %n.person, "budget or target notification sent on Slack")
                    }
                    Err(e) => {
                        tracing::warn!(person = %n.person, error = %e, "budget or target notification not sent on Slack")
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
        let off = v1::OffTarget {
            crossed: Some(v1::ThresholdCrossed {
                metric: "daily_output".into(),
                predicate: "daily_output < 10".into(),
                value: 2.0,
                entered: true,
                ..Default::default()
            }),
            notify: vec!["ana".into()],
            workflow: "daily-content-pipeline".into(),
            run_id: "target:daily_output@2026-12-06T00:00:00Z".into(),
            target: "10".into(),
        };
        let t = target_text(&off);
        assert!(
            t.contains("`daily_output` is off target: daily_output &lt; 10 (value 2; target 10)"),
            "{t}"
        );
        assert!(t.contains("Started daily-content-pipeline as run"), "{t}");
    }
}
