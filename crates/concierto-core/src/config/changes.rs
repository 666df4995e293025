//! Proposals that change the studio (issue "proposals become changes"): a
//! step's output may carry a change block, a fenced JSON object
//!
//! ```json
//! {"changes": [{"key": "triggers.on_performance_threshold.metric",
//!               "value": "engagement_rate < 0.04",
//!               "why": "0.05 fired 9 times a week for noise"}]}
//! ```
//!
//! The orchestrator labels such a step [`CHANGE_LABEL`], so the quality gate
//! whose `threshold` is that label asks its reviewers. Approving it applies
//! the change with [`apply_to_file`]: each key is found in the file, its value
//! rewritten on its own line (comments and layout kept) or added under its
//! parent, the whole new text validated as a studio, and only then written
//! (atomically, beside the old file). Every service then takes the new studio
//! without a restart (`studio.changed`).
//!
//! Keys a proposal may change (`<section>.<name>.<field>`):
//!
//! | key | fields |
//! |---|---|
//! | `triggers.<trigger>` | `time`, `interval`, `cron`, `metric`, `batch`, `max_runs_per_day` |
//! | `feedback_loops.<loop>` | `pass_mark`, `max_rounds`, `cycle_time` |
//! | `quality_gates.<gate>` | `sla` |
//! | `progress_metrics.<metric>` | `target` |

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::spans::Spans;
use super::{Studio, check_text_with_env};

/// The label a step's output gets when it proposes studio changes.
pub const CHANGE_LABEL: &str = "studio_change";

/// Most changes one proposal may carry.
pub const MAX_CHANGES: usize = 5;

/// Longest value a change may write.
const MAX_VALUE: usize = 200;

/// One proposed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// `<section>.<name>.<field>`, e.g. `triggers.daily_content_generation.time`.
    pub key: String,
    /// The new value: a string or a number.
    pub value: serde_json::Value,
    /// The proposer's reason.
    #[serde(default)]
    pub why: String,
}

/// A change as written to the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedChange {
    /// The proposal's key.
    pub key: String,
    /// Its path in the file (`triggers.event_based[1].on_performance_threshold.metric`).
    pub path: String,
    /// The value before, as written (empty when the key was added).
    pub old_value: String,
    /// The value written, as YAML.
    pub new_value: String,
    /// The proposer's reason.
    pub why: String,
    /// 1-based line in the new file.
    pub line: usize,
}

/// What [`apply_to_file`] wrote.
#[derive(Debug)]
pub struct Applied {
    /// The new studio, validated.
    pub studio: Studio,
    /// The new file text.
    pub text: String,
    /// Its version ([`version`]).
    pub version: String,
    /// Each change.
    pub changes: Vec<AppliedChange>,
}

/// A studio text's version: the first 16 hex digits of its SHA-256.
pub fn version(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..8])
}

#[derive(Deserialize)]
struct Block {
    changes: Vec<Proposal>,
}

/// The change block of a step's output: `Ok(None)` when it has none, an error
/// when a block is there but not valid (unknown key, bad value, too many).
pub fn proposals(output: &str) -> Result<Option<Vec<Proposal>>, String> {
    let mut found: Option<Vec<Proposal>> = None;
    for candidate in json_candidates(output) {
        if !candidate.contains("\"changes\"") {
            continue;
        }
        let block: Block = serde_json::from_str(candidate).map_err(|e| {
            format!("the change block is not valid JSON of the expected shape: {e}")
        })?;
        if found.is_some() {
            return Err("the output has more than one change block; send one".into());
        }
        found = Some(block.changes);
    }
    let Some(list) = found else {
        return Ok(None);
    };
    if list.is_empty() {
        return Ok(None);
    }
    if list.len() > MAX_CHANGES {
        return Err(format!(
            "{} changes proposed; at most {MAX_CHANGES} at once",
            list.len()
        ));
    }
    for p in &list {
        Target::parse(&p.key)?;
        scalar(&p.value).map_err(|e| format!("{}: {e}", p.key))?;
    }
    Ok(Some(list))
}

/// The fenced ```json blocks of `text`, or the whole text when it is one
/// JSON object.
fn json_candidates(text: &str) -> Vec<&str> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') && trimmed.ends_with('}') {
        return vec![trimmed];
    }
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```json") {
        let body = &rest[start + "```json".len()..];
        let Some(end) = body.find("```") else {
            break;
        };
        out.push(body[..end].trim());
        rest = &body[end + 3..];
    }
    out
}

/// A proposal's value as a YAML scalar.
fn scalar(v: &serde_json::Value) -> Result<String, String> {
    let s = match v {
        serde_json::Value::String(s) => {
            if s.chars().any(char::is_control) {
                return Err("the value has control characters".into());
            }
            serde_json::to_string(s).map_err(|e| e.to_string())?
        }
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return Err("the value must be a string or a number".into()),
    };
    if s.len() > MAX_VALUE {
        return Err(format!("the value is longer than {MAX_VALUE} characters"));
    }
    Ok(s)
}

/// Which key of the file a proposal's key names.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    /// Key names from the top, `*` for any (a trigger's or metric's group).
    parent: Vec<String>,
    field: String,
}

impl Target {
    fn parse(key: &str) -> Result<Target, String> {
        let parts: Vec<&str> = key.split('.').collect();
        let [section, name, field] = parts.as_slice() else {
            return Err(format!(
                "key {key:?}: write <section>.<name>.<field>, e.g. triggers.daily_content_generation.time"
            ));
        };
        let (prefix, fields): (&[&str], &[&str]) = match *section {
            "triggers" => (
                &["triggers", "*"],
                &[
                    "time",
                    "interval",
                    "cron",
                    "metric",
                    "batch",
                    "max_runs_per_day",
                ],
            ),
            "feedback_loops" => (
                &["feedback_loops", "agent_to_agent"],
                &["pass_mark", "max_rounds", "cycle_time"],
            ),
            "quality_gates" => (
                &["feedback_loops", "agent_to_human", "quality_gates"],
                &["sla"],
            ),
            "progress_metrics" => (&["progress_metrics", "*"], &["target"]),
            other => {
                return Err(format!(
                    "key {key:?}: section {other:?} cannot be changed by a proposal \
                     (triggers, feedback_loops, quality_gates, progress_metrics)"
                ));
            }
        };
        if !fields.contains(field) {
            return Err(format!(
                "key {key:?}: {field:?} cannot be changed by a proposal (in {section}: {})",
                fields.join(", ")
            ));
        }
        if name.is_empty() || name.contains(['[', ']', '*']) {
            return Err(format!("key {key:?}: bad name {name:?}"));
        }
        let mut parent: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        parent.push(name.to_string());
        Ok(Target {
            parent,
            field: field.to_string(),
        })
    }
}

/// The key names of a span path, list indices dropped.
fn names(path: &str) -> Vec<&str> {
    path.split('.')
        .map(|seg| seg.split('[').next().unwrap_or(seg))
        .collect()
}

fn matches(pattern: &[String], path: &str) -> bool {
    let n = names(path);
    n.len() == pattern.len() && pattern.iter().zip(n).all(|(p, s)| p == "*" || p == s)
}

/// Where one change goes in the text.
#[derive(Debug)]
enum Spot {
    /// Rewrite the value on this line (1-based).
    Replace { path: String, line: usize },
    /// Insert `field: value` before this line, indented like it.
    Insert { path: String, before: usize },
}

fn locate(spans: &Spans, target: &Target, key: &str) -> Result<Spot, String> {
    let mut field_pattern = target.parent.clone();
    field_pattern.push(target.field.clone());
    let found: Vec<(&str, usize)> = spans
        .paths()
        .filter(|(p, _)| matches(&field_pattern, p))
        .collect();
    match found.as_slice() {
        [(p, line)] => {
            return Ok(Spot::Replace {
                path: p.to_string(),
                line: *line,
            });
        }
        [] => {}
        _ => return Err(format!("key {key:?} is in the file more than once")),
    }
    let parents: Vec<(&str, usize)> = spans
        .paths()
        .filter(|(p, _)| matches(&target.parent, p))
        .collect();
    let (parent, parent_line) = match parents.as_slice() {
        [one] => *one,
        [] => {
            let name = target.parent.last().map(String::as_str).unwrap_or("");
            return Err(format!("key {key:?}: the studio has no {name:?} there"));
        }
        _ => return Err(format!("key {key:?} is in the file more than once")),
    };
    let prefix = format!("{parent}.");
    let first_child = spans
        .paths()
        .filter(|(p, l)| p.starts_with(&prefix) && *l > parent_line)
        .map(|(_, l)| l)
        .min()
        .ok_or_else(|| {
            format!("key {key:?}: {parent} has no key on a line of its own to add it beside")
        })?;
    Ok(Spot::Insert {
        path: format!("{parent}.{}", target.field),
        before: first_child,
    })
}

/// Splits a `key: value  # comment` line: (up to and with `key:`, value, the
/// comment with the spaces before it).
fn split_line<'a>(line: &'a str, field: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let lead = line.len() - line.trim_start().len();
    let mut at = lead;
    if line[at..].starts_with("- ") {
        at += 2;
        at += line[at..].len() - line[at..].trim_start().len();
    }
    let head = format!("{field}:");
    if !line[at..].starts_with(&head) {
        return None;
    }
    let value_start = at + head.len();
    let rest = &line[value_start..];
    // The comment: a ` #` outside quotes.
    let (mut quote, mut prev_space, mut cut) = (None::<char>, true, rest.len());
    for (i, c) in rest.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev_space => {
                cut = i;
                break;
            }
            None => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    let raw = rest[..cut].trim_end();
    let comment = &rest[raw.len()..];
    Some((&line[..value_start], raw.trim_start(), comment))
}

/// `text` with `proposals` applied, and what changed. Fails, changing
/// nothing, when a key is not allowed, not found, or not a one-line value.
pub fn apply_to_text(
    text: &str,
    proposals: &[Proposal],
) -> Result<(String, Vec<AppliedChange>), String> {
    let spans = Spans::index(text).map_err(|e| {
        format!(
            "the studio file is not valid YAML (line {}): {}",
            e.line, e.message
        )
    })?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut planned = Vec::new();
    for p in proposals {
        let target = Target::parse(&p.key)?;
        let value = scalar(&p.value).map_err(|e| format!("{}: {e}", p.key))?;
        let spot = locate(&spans, &target, &p.key)?;
        planned.push((spot, target.field, value, p));
    }
    // Bottom-up, so an insertion does not move the lines still to edit.
    planned.sort_by_key(|(spot, ..)| {
        std::cmp::Reverse(match spot {
            Spot::Replace { line, .. } => *line,
            Spot::Insert { before, .. } => *before,
        })
    });
    let mut changes = Vec::new();
    for (spot, field, value, p) in planned {
        match spot {
            Spot::Replace { path, line } => {
                let idx = line.checked_sub(1).ok_or("line 0")?;
                let current = lines
                    .get(idx)
                    .ok_or_else(|| format!("{}: no line {line}", p.key))?;
                let (head, old, comment) = split_line(current, &field).ok_or_else(|| {
                    format!("{}: line {line} is not a `{field}: value` line", p.key)
                })?;
                if old.is_empty() || old.starts_with(['|', '>', '[', '{', '&', '*']) {
                    return Err(format!(
                        "{}: line {line} holds a block or list, not one value; edit it by hand",
                        p.key
                    ));
                }
                let new_line = format!("{head} {value}{comment}");
                changes.push(AppliedChange {
                    key: p.key.clone(),
                    path,
                    old_value: old.to_string(),
                    new_value: value.clone(),
                    why: p.why.clone(),
                    line,
                });
                lines[idx] = new_line;
            }
            Spot::Insert { path, before } => {
                let idx = before.checked_sub(1).ok_or("line 0")?;
                let sibling = lines
                    .get(idx)
                    .ok_or_else(|| format!("{}: no line {before}", p.key))?;
                let indent = &sibling[..sibling.len() - sibling.trim_start().len()];
                let new_line = format!("{indent}{field}: {value}");
                lines.insert(idx, new_line);
                // Lines of changes already made below move down by one.
                for c in &mut changes {
                    if c.line >= before {
                        c.line += 1;
                    }
                }
                changes.push(AppliedChange {
                    key: p.key.clone(),
                    path,
                    old_value: String::new(),
                    new_value: value.clone(),
                    why: p.why.clone(),
                    line: before,
                });
            }
        }
    }
    changes.reverse();
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok((out, changes))
}

/// Applies `proposals` to the studio file at `path`: the new text is
/// validated as a whole studio (with `env` as the environment) and written
/// only when it has no error, atomically (a temporary file beside it, then a
/// rename). Errors are `file:line: message` lines; the file is then untouched.
pub fn apply_to_file(
    path: &Path,
    proposals: &[Proposal],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Applied, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "{}: cannot read the studio file: {e}",
            path.display()
        )]
    })?;
    let (new_text, changes) =
        apply_to_text(&text, proposals).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let checked = check_text_with_env(path, &new_text, env);
    let Some(studio) = checked.studio else {
        return Err(checked
            .problems
            .iter()
            .filter(|p| p.severity == super::Severity::Error)
            .map(|p| p.to_string())
            .collect());
    };
    write_atomically(path, &new_text).map_err(|e| {
        vec![format!(
            "{}: cannot write the studio file: {e}",
            path.display()
        )]
    })?;
    Ok(Applied {
        studio,
        version: version(&new_text),
        text: new_text,
        changes,
    })
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "studio.yaml".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = f.set_permissions(meta.permissions());
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDIO: &str = r#"triggers:
  scheduled:
    - daily:
        time: "09:00"   # morning
        workflow: "w"
  event_based:
    - on_performance_threshold:
        metric: "engagement_rate < 0.05"
        workflow: "w"
feedback_loops:
  agent_to_agent:
    - creator_to_reviewer:
        producer: [a]
        reviewer: [b]
        cycle_time: "immediate"
progress_metrics:
  content_generation:
    - daily_output:
        target: 10
"#;

    fn p(key: &str, value: serde_json::Value) -> Proposal {
        Proposal {
            key: key.into(),
            value,
            why: "because".into(),
        }
    }

    #[test]
    fn a_value_is_rewritten_on_its_line_keeping_the_comment() {
        let (out, ch) = apply_to_text(
            STUDIO,
            &[
                p("triggers.daily.time", serde_json::json!("11:00")),
                p(
                    "triggers.on_performance_threshold.metric",
                    serde_json::json!("engagement_rate < 0.04"),
                ),
                p("progress_metrics.daily_output.target", serde_json::json!(8)),
            ],
        )
        .unwrap();
        assert!(
            out.contains("        time: \"11:00\"   # morning\n"),
            "{out}"
        );
        assert!(
            out.contains("metric: \"engagement_rate < 0.04\"\n"),
            "{out}"
        );
        assert!(out.contains("        target: 8\n"), "{out}");
        assert_eq!(ch.len(), 3);
        assert_eq!(ch[0].old_value, "\"09:00\"");
        assert_eq!(ch[0].path, "triggers.scheduled[0].daily.time");
        assert_eq!(ch[0].line, 4);
        assert_eq!(out.lines().count(), STUDIO.lines().count());
    }

    #[test]
    fn a_missing_field_is_added_under_its_parent() {
        let (out, ch) = apply_to_text(
            STUDIO,
            &[
                p(
                    "feedback_loops.creator_to_reviewer.pass_mark",
                    serde_json::json!(0.9),
                ),
                p("triggers.daily.time", serde_json::json!("10:30")),
            ],
        )
        .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let at = ch
            .iter()
            .find(|c| c.key.ends_with("pass_mark"))
            .unwrap()
            .line;
        assert_eq!(lines[at - 1], "        pass_mark: 0.9");
        assert_eq!(lines[at - 2], "    - creator_to_reviewer:");
        let t = ch.iter().find(|c| c.key.ends_with("time")).unwrap();
        assert!(lines[t.line - 1].contains("10:30"));
        assert!(Spans::index(&out).is_ok());
    }

    #[test]
    fn bad_proposals_are_refused_with_why() {
        for (key, v, want) in [
            (
                "server.grpc_addr.x",
                serde_json::json!("0.0.0.0:1"),
                "cannot be changed",
            ),
            (
                "triggers.daily.workflow",
                serde_json::json!("other"),
                "cannot be changed",
            ),
            ("triggers.nope.time", serde_json::json!("10:00"), "has no"),
            (
                "triggers.daily.time",
                serde_json::json!({"a": 1}),
                "string or a number",
            ),
            (
                "triggers.daily",
                serde_json::json!("x"),
                "<section>.<name>.<field>",
            ),
            (
                "triggers.daily.time",
                serde_json::json!("a\nb: c"),
                "control",
            ),
        ] {
            let e = apply_to_text(STUDIO, &[p(key, v)]).unwrap_err();
            assert!(e.contains(want), "{key}: {e}");
        }
    }

    #[test]
    fn proposals_come_from_a_fenced_block_and_are_checked() {
        let out = "## Optimization proposals\n1. lower the threshold\n\n```json\n{\"changes\": [{\"key\": \"triggers.on_performance_threshold.metric\", \"value\": \"engagement_rate < 0.04\", \"why\": \"noise\"}]}\n```\n";
        let got = proposals(out).unwrap().unwrap();
        assert_eq!(got[0].key, "triggers.on_performance_threshold.metric");
        assert_eq!(proposals("no block here").unwrap(), None);
        assert_eq!(proposals("```json\n{\"pass\": true}\n```").unwrap(), None);
        let many: Vec<_> = (0..6)
            .map(|_| serde_json::json!({"key": "triggers.a.time", "value": "10:00"}))
            .collect();
        let text = serde_json::json!({ "changes": many }).to_string();
        assert!(proposals(&text).unwrap_err().contains("at most 5"));
        assert!(
            proposals("{\"changes\": [{\"key\": \"server.x.y\", \"value\": 1}]}")
                .unwrap_err()
                .contains("cannot be changed")
        );
    }

    #[test]
    fn a_yaml_breaking_value_stays_one_scalar() {
        let (out, _) = apply_to_text(
            STUDIO,
            &[p("triggers.daily.time", serde_json::json!("x\" # y: [z"))],
        )
        .unwrap();
        assert!(Spans::index(&out).is_ok(), "{out}");
        assert!(!out.contains("y: [z\n"));
    }
}
