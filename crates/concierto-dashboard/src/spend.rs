//! The spend section of the Agents page: what model calls cost per UTC day,
//! per role and per workflow, against the day's budget (asked of the
//! orchestrator, `orchestrator.spend.get`).

use std::collections::BTreeMap;

use concierto_core::subjects;
use concierto_proto::v1;

use crate::DashboardState;
use crate::html::{esc, refusal_box};
use crate::services::ask;

/// Days the section shows.
const DAYS: u32 = 7;

fn usd(x: f64) -> String {
    if x > 0.0 {
        format!("${x:.4}")
    } else {
        "–".into()
    }
}

/// The section's HTML: a table of days (total, budget used) and the week's
/// spend per role and per workflow; the refusal when the orchestrator does not
/// answer.
pub(crate) async fn section(state: &DashboardState) -> String {
    let r: Result<v1::GetSpendResponse, _> = ask(
        state,
        "orchestrator",
        subjects::ORCHESTRATOR_SPEND,
        &v1::GetSpendRequest { days: DAYS },
        None,
    )
    .await;
    match r {
        Ok(s) => render(&s),
        Err(r) => format!(
            "<section id=\"spend\"><h2>Spend</h2>{}</section>",
            refusal_box(&r)
        ),
    }
}

fn render(s: &v1::GetSpendResponse) -> String {
    let days: String = s
        .days
        .iter()
        .map(|d| {
            let used = if s.per_day_usd > 0.0 {
                format!("{:.0}%", (d.total_usd / s.per_day_usd * 100.0).min(999.0))
            } else {
                "–".into()
            };
            format!(
                "<tr data-day=\"{day}\"><td>{day}</td><td class=\"num\">{total}</td><td class=\"num\">{used}</td></tr>",
                day = esc(&d.day),
                total = usd(d.total_usd),
            )
        })
        .collect();
    let mut roles: BTreeMap<&str, f64> = BTreeMap::new();
    let mut workflows: BTreeMap<&str, f64> = BTreeMap::new();
    for d in &s.days {
        for (k, v) in &d.by_role {
            *roles.entry(k).or_insert(0.0) += v;
        }
        for (k, v) in &d.by_workflow {
            *workflows.entry(k).or_insert(0.0) += v;
        }
    }
    let list = |m: &BTreeMap<&str, f64>, what: &str| -> String {
        if m.is_empty() {
            return format!("<p class=\"muted\">No {what} has spent anything this week.</p>");
        }
        let rows: String = m
            .iter()
            .map(|(k, v)| {
                format!(
                    "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                    esc(k),
                    usd(*v)
                )
            })
            .collect();
        format!(
            "<table><thead><tr><th>{what}</th><th>Spent (7 days)</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let limit = if s.per_day_usd > 0.0 {
        format!(
            "Day budget: {} (<code>agents.budget.per_day_usd</code>).",
            usd(s.per_day_usd)
        )
    } else {
        "No day budget is set (<code>agents.budget.per_day_usd</code>).".into()
    };
    format!(
        "<section id=\"spend\"><h2>Spend</h2><p class=\"muted\">{limit}</p>\
<table><thead><tr><th>Day (UTC)</th><th>Spent</th><th>Of the day budget</th></tr></thead><tbody>{days}</tbody></table>\
{roles}{workflows}</section>",
        roles = list(&roles, "role"),
        workflows = list(&workflows, "workflow"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_is_shown_per_day_role_and_workflow_with_names_escaped() {
        let s = v1::GetSpendResponse {
            per_day_usd: 10.0,
            days: vec![v1::DaySpend {
                day: "2026-12-06".into(),
                total_usd: 2.5,
                by_role: [("<b>writer</b>".to_string(), 2.5)].into_iter().collect(),
                by_workflow: [("daily".to_string(), 2.5)].into_iter().collect(),
            }],
        };
        let html = render(&s);
        assert!(html.contains("$2.5000"), "{html}");
        assert!(html.contains("25%"), "{html}");
        assert!(html.contains("&lt;b&gt;writer&lt;/b&gt;"), "{html}");
        assert!(!html.contains("<b>writer"), "{html}");
        assert!(html.contains("<td>daily</td>"), "{html}");
    }
}
