//! `server.retention`: how long the orchestrator keeps runs that ended.
//!
//! ```yaml
//! server:
//!   retention: "90 days"   # the default; "0" or "off" keeps every run
//! ```
//!
//! A run whose last change is older than the retention is removed with what
//! it left behind (its gates, index rows); a run still going is never
//! removed. `validate` rejects anything but a duration, `0` or `off`.

use std::time::Duration;

use serde_json::{Map, Value};

use super::spans::child;
use super::walk::{Walker, describe};
use crate::grammar::parse_duration;

/// Runs are kept this long by default (90 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// What `text` says: `Ok(None)` keeps runs forever, `Ok(Some(d))` keeps them `d`.
pub fn parse(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if matches!(
        t.to_ascii_lowercase().as_str(),
        "0" | "off" | "never" | "forever"
    ) {
        return Ok(None);
    }
    match parse_duration(t) {
        Ok(d) if d.is_zero() => Ok(None),
        Ok(d) if d < Duration::from_secs(60) => Err(format!(
            "{t:?} is shorter than a minute: runs would be removed as they end; write a duration such as \"90 days\", or \"off\" to keep every run"
        )),
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(format!("bad duration: {e} (or \"off\" to keep every run)")),
    }
}

/// `server.retention` of the map `m` at `path`: the default when absent.
pub(crate) fn read(w: &mut Walker<'_>, m: &Map<String, Value>, path: &str) -> Option<Duration> {
    let key = child(path, "retention");
    let text = match m.get("retention") {
        None | Some(Value::Null) => return Some(DEFAULT_RETENTION),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(false)) => return None,
        Some(other) => {
            w.error(
                &key,
                format!(
                    "must be a duration such as \"90 days\", or \"off\", found {}",
                    describe(other)
                ),
            );
            return Some(DEFAULT_RETENTION);
        }
    };
    match parse(&text) {
        Ok(r) => r,
        Err(e) => {
            w.error(&key, e);
            Some(DEFAULT_RETENTION)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_off() {
        assert_eq!(parse("90 days"), Ok(Some(DEFAULT_RETENTION)));
        assert_eq!(parse("2 h"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(parse("0"), Ok(None));
        assert_eq!(parse("off"), Ok(None));
        assert_eq!(parse("0 days"), Ok(None));
        assert!(parse("10 s").is_err());
        assert!(parse("ninety days").is_err());
        assert!(parse("-3 days").is_err());
    }

    fn check_text(text: &str) -> (tempfile::TempDir, crate::config::Checked) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("concierto.yaml");
        let agents =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
        std::fs::write(
            &file,
            format!("agents:\n  paths: [\"{}\"]\n{text}", agents.display()),
        )
        .expect("write");
        let checked = crate::config::check_with_env(&file, Vec::new());
        (dir, checked)
    }

    #[test]
    fn the_key_is_read_and_a_bad_value_has_its_line() {
        let (_d, c) = check_text("server:\n  grpc_addr: 127.0.0.1:1\n");
        let studio = c.studio.expect("loads");
        assert_eq!(studio.server.retention, Some(DEFAULT_RETENTION));
        let (_d, c) = check_text("server:\n  retention: off\n");
        assert_eq!(c.studio.expect("loads").server.retention, None);
        let (_d, c) = check_text("server:\n  retention: \"30 days\"\n");
        assert_eq!(
            c.studio.expect("loads").server.retention,
            Some(Duration::from_secs(30 * 24 * 3600))
        );
        let (_d, c) = check_text("server:\n  grpc_addr: 127.0.0.1:1\n  retention: soon\n");
        let errors: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("concierto.yaml:5:") && e.contains("server.retention")),
            "{errors:?}"
        );
    }
}
