//! `server.partitions`: how many partitions run ids hash to, each owned by one
//! orchestrator at a time (DESIGN.md section 3).
//!
//! ```yaml
//! server:
//!   partitions: 8   # default 1: one orchestrator owns every run
//! ```
//!
//! Fixed for the life of a studio's data: runs are stored by partition, so a
//! changed count would strand them. A live reload refuses a change, and an
//! orchestrator refuses to start on state written with another count.

use serde_json::{Map, Value};

use super::spans::child;
use super::walk::{Walker, describe};
use crate::partition::MAX_PARTITIONS;

/// `server.partitions` of the map `m` at `path`: 1 when absent.
pub(crate) fn read(w: &mut Walker<'_>, m: &Map<String, Value>, path: &str) -> u32 {
    let key = child(path, "partitions");
    match m.get("partitions") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(p) if (1..=u64::from(MAX_PARTITIONS)).contains(&p) => p as u32,
            _ => {
                w.error(
                    &key,
                    format!("must be a whole number from 1 to {MAX_PARTITIONS}, found {n}"),
                );
                1
            }
        },
        Some(other) => {
            w.error(
                &key,
                format!(
                    "must be a whole number from 1 to {MAX_PARTITIONS}, found {}",
                    describe(other)
                ),
            );
            1
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn default_one_and_bounds() {
        let (_d, c) = check_text("server:\n  grpc_addr: 127.0.0.1:1\n");
        assert_eq!(c.studio.expect("loads").server.partitions, 1);
        let (_d, c) = check_text("server:\n  partitions: 8\n");
        assert_eq!(c.studio.expect("loads").server.partitions, 8);
        for bad in ["0", "65", "-1", "2.5", "\"eight\""] {
            let (_d, c) = check_text(&format!("server:\n  partitions: {bad}\n"));
            let errors: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains("server.partitions") && e.contains("1 to 64")),
                "{bad}: {errors:?}"
            );
        }
    }
}
