//! How many content pieces a deliverable is (`daily_output`).
//!
//! The rule, on the deliverable step's output:
//!
//! - a JSON array (the whole output, after trimming) is one piece per element;
//! - Markdown with level-2 headings (`## ` lines) is one piece per such
//!   heading; without them, one per level-3 heading (`### `), so a piece's
//!   sub-sections are not counted twice;
//! - anything else (one text, one brief) is one piece.
//!
//! Headings inside fenced code blocks (```` ``` ````) are not counted. A
//! deliverable counts at most [`MAX_PIECES`] pieces.

/// Most pieces one deliverable counts.
pub const MAX_PIECES: u32 = 100;

/// The pieces of `content`: at least 1, at most [`MAX_PIECES`].
pub fn count_pieces(content: &str) -> u32 {
    let trimmed = content.trim();
    if trimmed.starts_with('[')
        && let Ok(serde_json::Value::Array(a)) = serde_json::from_str::<serde_json::Value>(trimmed)
    {
        return clamp(a.len());
    }
    let (mut h2, mut h3, mut fenced) = (0usize, 0usize, false);
    for line in content.lines() {
        let l = line.trim_start();
        if l.starts_with("```") || l.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if l.starts_with("## ") {
            h2 += 1;
        } else if l.starts_with("### ") {
            h3 += 1;
        }
    }
    clamp(if h2 > 0 { h2 } else { h3 })
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(MAX_PIECES).clamp(1, MAX_PIECES)
}

/// How long the tracker waits for the orchestrator's answer about a run.
pub const GET_RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The pieces run `run_id` delivered: the sum of [`count_pieces`] over the
/// outputs of its succeeded `steps` (the workflow's `deliverables`), asked of
/// the orchestrator (`orchestrator.runs.get`). When it does not answer within
/// [`GET_RUN_TIMEOUT`], each deliverable step counts one piece (logged).
pub async fn pieces_of_run(bus: &dyn concierto_bus::Bus, run_id: &str, steps: &[String]) -> u32 {
    use concierto_bus::BusExt as _;
    use concierto_proto::v1;
    let asked = bus
        .request_proto::<_, v1::GetRunResponse>(
            concierto_core::subjects::ORCHESTRATOR_GET_RUN,
            &v1::GetRunRequest {
                run_id: run_id.to_string(),
            },
            GET_RUN_TIMEOUT,
        )
        .await;
    match asked {
        Ok(v1::GetRunResponse { run: Some(run) }) => run
            .steps
            .iter()
            .filter(|s| steps.contains(&s.step_id) && s.state == v1::StepState::Succeeded as i32)
            .map(|s| count_pieces(&s.output))
            .fold(0u32, u32::saturating_add),
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                Ok(_) => "no such run".to_string(),
            };
            tracing::warn!(run = %run_id, reason = %why, "the run's outputs could not be read; each deliverable counts one piece");
            u32::try_from(steps.len()).unwrap_or(u32::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_arrays_and_plain_text() {
        assert_eq!(count_pieces("Just one post."), 1);
        assert_eq!(count_pieces(""), 1);
        let md = "# Today\n\n## Post 1\ntext\n### detail\n## Post 2\n```\n## not a heading\n```\n## Post 3\n";
        assert_eq!(count_pieces(md), 3);
        assert_eq!(count_pieces("### A\n### B\n"), 2);
        assert_eq!(
            count_pieces(r#"[{"post":"a"},{"post":"b"},{"post":"c"},{"post":"d"}]"#),
            4
        );
        assert_eq!(count_pieces("[not json"), 1);
        let many: String = (0..500).map(|i| format!("## {i}\n")).collect();
        assert_eq!(count_pieces(&many), MAX_PIECES);
    }
}
