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
//! parent, the new text checked to read as the old but for the proposed
//! values, validated as a whole studio, and only then written (atomically,
//! beside the old file). Every service then takes the new studio
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
use yaml_rust2::{Yaml, YamlLoader};

use super::spans::{Spans, child, item};
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
    check_list(&list)?;
    Ok(Some(list))
}

/// At most [`MAX_CHANGES`], each key allowed and named once, each value one
/// scalar.
fn check_list(list: &[Proposal]) -> Result<(), String> {
    if list.len() > MAX_CHANGES {
        return Err(format!(
            "{} changes proposed; at most {MAX_CHANGES} at once",
            list.len()
        ));
    }
    for (i, p) in list.iter().enumerate() {
        Target::parse(&p.key)?;
        scalar(&p.value).map_err(|e| format!("{}: {e}", p.key))?;
        if list[..i].iter().any(|q| q.key == p.key) {
            return Err(format!("key {:?} is proposed more than once", p.key));
        }
    }
    Ok(())
}

/// Characters that are not what they look like: invisible, or reordering
/// the text around them (a value shown to the reviewer must read as written).
fn deceptive(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
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
            if s.chars().any(deceptive) {
                return Err("the value has invisible or direction-changing characters".into());
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
        if name.is_empty()
            || name.contains(['[', ']', '*'])
            || name.chars().any(|c| c.is_control() || deceptive(c))
        {
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

/// The lines of `text` with the break that ends each (`\n`, `\r\n`, a lone
/// `\r`, or none on a last line), split where YAML breaks lines so that line
/// N here is the parser's line N.
fn split_lines(text: &str) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some(at) = rest.find(['\r', '\n']) else {
            out.push((rest.to_string(), ""));
            break;
        };
        let len = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
        out.push((rest[..at].to_string(), &rest[at..at + len]));
        rest = &rest[at + len..];
    }
    out
}

/// `text` with `proposals` applied, and what changed. Fails, changing
/// nothing, when a key is not allowed, not found, or not a one-line value,
/// or when the edited text would differ from `text` in anything but the
/// proposed values.
pub fn apply_to_text(
    text: &str,
    proposals: &[Proposal],
) -> Result<(String, Vec<AppliedChange>), String> {
    check_list(proposals)?;
    let spans = Spans::index(text).map_err(|e| {
        format!(
            "the studio file is not valid YAML (line {}): {}",
            e.line, e.message
        )
    })?;
    let mut lines = split_lines(text);
    // The break of a line added before the last line when that has none.
    let default_break = lines
        .iter()
        .map(|(_, b)| *b)
        .find(|b| !b.is_empty())
        .unwrap_or("\n");
    let mut planned = Vec::new();
    for p in proposals {
        let target = Target::parse(&p.key)?;
        let value = scalar(&p.value).map_err(|e| format!("{}: {e}", p.key))?;
        let spot = locate(&spans, &target, &p.key)?;
        planned.push((spot, target.field, value, p));
    }
    // Bottom-up, so an insertion does not move the lines still to edit; on
    // one line, its rewrite before an insertion above it.
    planned.sort_by_key(|(spot, ..)| {
        std::cmp::Reverse(match spot {
            Spot::Replace { line, .. } => (*line, 1),
            Spot::Insert { before, .. } => (*before, 0),
        })
    });
    let mut changes = Vec::new();
    for (spot, field, value, p) in planned {
        match spot {
            Spot::Replace { path, line } => {
                let idx = line.checked_sub(1).ok_or("line 0")?;
                let (current, _) = lines
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
                lines[idx].0 = new_line;
            }
            Spot::Insert { path, before } => {
                let idx = before.checked_sub(1).ok_or("line 0")?;
                let (sibling, brk) = lines
                    .get(idx)
                    .ok_or_else(|| format!("{}: no line {before}", p.key))?;
                let indent = &sibling[..sibling.len() - sibling.trim_start().len()];
                let new_line = format!("{indent}{field}: {value}");
                let brk = if brk.is_empty() { default_break } else { brk };
                lines.insert(idx, (new_line, brk));
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
    let out: String = lines
        .iter()
        .flat_map(|(line, brk)| [line.as_str(), brk])
        .collect();
    only_these_changed(text, &out, &changes)?;
    Ok((out, changes))
}

/// Checks that `new` reads as `old` with exactly `changes` made: each changed
/// path holds its new value, and every other value is as it was (an edit
/// that also changed an alias of its node, left a continuation line, or
/// landed elsewhere is refused).
fn only_these_changed(old: &str, new: &str, changes: &[AppliedChange]) -> Result<(), String> {
    let old_docs = YamlLoader::load_from_str(old)
        .map_err(|e| format!("the studio file is not valid YAML: {e}"))?;
    if old_docs.len() != 1 {
        return Err(format!(
            "the studio file holds {} YAML documents; a change edits a file of one",
            old_docs.len()
        ));
    }
    let new_docs = YamlLoader::load_from_str(new)
        .map_err(|e| format!("the edited file would not be valid YAML ({e}); edit it by hand"))?;
    let [new_doc] = new_docs.as_slice() else {
        return Err("the edited file would not be one YAML document; edit it by hand".into());
    };
    let mut want = std::collections::HashMap::new();
    for c in changes {
        let value = YamlLoader::load_from_str(&c.new_value)
            .ok()
            .and_then(|d| d.into_iter().next())
            .ok_or_else(|| format!("{}: {} is not a YAML value", c.key, c.new_value))?;
        want.insert(c.path.as_str(), value);
    }
    let mut seen = 0;
    same(Some(&old_docs[0]), new_doc, "", &want, &mut seen)?;
    if seen != want.len() {
        return Err("a change did not land on its key; edit the file by hand".into());
    }
    Ok(())
}

/// A map key as the span paths write it.
fn key_text(k: &Yaml) -> String {
    match k {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// `new` is `old` but for the paths in `want` (which it holds; counted in
/// `seen`).
fn same(
    old: Option<&Yaml>,
    new: &Yaml,
    path: &str,
    want: &std::collections::HashMap<&str, Yaml>,
    seen: &mut usize,
) -> Result<(), String> {
    let what = if path.is_empty() { "the file" } else { path };
    if let Some(w) = want.get(path) {
        if new != w {
            return Err(format!(
                "{what} would not hold the proposed value; edit the file by hand"
            ));
        }
        *seen += 1;
        return Ok(());
    }
    match (old, new) {
        (Some(Yaml::Hash(a)), Yaml::Hash(b)) => {
            for (k, v) in b {
                let p = child(path, &key_text(k));
                same(a.get(k), v, &p, want, seen)?;
            }
            match a.keys().find(|k| !b.contains_key(k)) {
                Some(k) => Err(format!(
                    "the edit would remove {}; edit the file by hand",
                    child(path, &key_text(k))
                )),
                None => Ok(()),
            }
        }
        (Some(Yaml::Array(a)), Yaml::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same(Some(x), y, &item(path, i), want, seen)?;
            }
            Ok(())
        }
        (Some(o), n) if o == n => Ok(()),
        _ => Err(format!(
            "the edit would also change {what}, which no proposal names; edit the file by hand"
        )),
    }
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

/// Writes `text` to `path` through a temporary file beside it and a rename,
/// keeping the file's permissions; a symbolic link stays a link (its target
/// is written).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
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
    // A temporary file left by a crash (or a link put there) is not opened.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Ok(meta) = std::fs::metadata(&path) {
            let _ = f.set_permissions(meta.permissions());
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Ok(d) = std::fs::File::open(&dir) {
        // The rename itself durable (best effort: not every system can).
        let _ = d.sync_all();
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

    fn json(v: &str) -> serde_json::Value {
        serde_json::json!(v)
    }

    #[test]
    fn lone_carriage_returns_do_not_move_the_edit_to_another_line() {
        // YAML breaks lines at a lone CR too: two of them in a comment made
        // the edit of `daily` land two lines lower, on `weekly`'s time.
        let text = "# one\r# two\r# three\ntriggers:\n  scheduled:\n    - daily:\n        time: \"09:00\"\n    - weekly:\n        time: \"10:00\"\n";
        let (out, ch) = apply_to_text(text, &[p("triggers.daily.time", json("11:00"))]).unwrap();
        assert_eq!(
            out,
            "# one\r# two\r# three\ntriggers:\n  scheduled:\n    - daily:\n        time: \"11:00\"\n    - weekly:\n        time: \"10:00\"\n"
        );
        assert_eq!(ch[0].line, 7);
    }

    #[test]
    fn crlf_line_endings_are_kept_and_used_for_an_added_line() {
        let text = STUDIO.replace('\n', "\r\n");
        let (out, _) = apply_to_text(
            &text,
            &[
                p("triggers.daily.time", json("11:00")),
                p(
                    "feedback_loops.creator_to_reviewer.pass_mark",
                    serde_json::json!(0.9),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            out.matches("\r\n").count(),
            out.matches('\n').count(),
            "{out:?}"
        );
        assert_eq!(out.lines().count(), STUDIO.lines().count() + 1);
        assert!(
            out.contains("        time: \"11:00\"   # morning\r\n"),
            "{out:?}"
        );
        assert!(out.contains("        pass_mark: 0.9\r\n"), "{out:?}");
    }

    #[test]
    fn a_file_without_a_last_newline_keeps_none() {
        let text = "triggers:\n  scheduled:\n    - daily:\n        time: \"09:00\"";
        let (out, _) = apply_to_text(text, &[p("triggers.daily.time", json("11:00"))]).unwrap();
        assert_eq!(
            out,
            "triggers:\n  scheduled:\n    - daily:\n        time: \"11:00\""
        );
        let (out, _) = apply_to_text(
            text,
            &[p("triggers.daily.max_runs_per_day", serde_json::json!(3))],
        )
        .unwrap();
        assert_eq!(
            out,
            "triggers:\n  scheduled:\n    - daily:\n        max_runs_per_day: 3\n        time: \"09:00\""
        );
    }

    #[test]
    fn an_added_key_and_a_rewrite_of_the_line_it_goes_before_both_apply() {
        let text = "feedback_loops:\n  agent_to_agent:\n    - creator_to_reviewer:\n        cycle_time: \"immediate\"\n        producer: [a]\n";
        let (out, ch) = apply_to_text(
            text,
            &[
                p(
                    "feedback_loops.creator_to_reviewer.pass_mark",
                    serde_json::json!(0.9),
                ),
                p(
                    "feedback_loops.creator_to_reviewer.cycle_time",
                    json("1 hour"),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "feedback_loops:\n  agent_to_agent:\n    - creator_to_reviewer:\n        pass_mark: 0.9\n        cycle_time: \"1 hour\"\n        producer: [a]\n"
        );
        let lines: Vec<(&str, usize)> = ch.iter().map(|c| (c.key.as_str(), c.line)).collect();
        assert!(lines.contains(&("feedback_loops.creator_to_reviewer.pass_mark", 4)));
        assert!(lines.contains(&("feedback_loops.creator_to_reviewer.cycle_time", 5)));
    }

    #[test]
    fn a_change_that_would_also_change_an_alias_of_its_trigger_is_refused() {
        let text = "triggers:\n  scheduled:\n    - daily: &same\n        time: \"09:00\"\n        workflow: \"w\"\n    - again: *same\n";
        let e = apply_to_text(text, &[p("triggers.daily.time", json("11:00"))]).unwrap_err();
        assert!(e.contains("triggers.scheduled[1].again.time"), "{e}");
    }

    #[test]
    fn a_value_continued_on_the_next_line_is_refused() {
        let text = "triggers:\n  event_based:\n    - on_x:\n        metric: engagement_rate\n          < 0.05\n        workflow: w\n";
        let e = apply_to_text(
            text,
            &[p("triggers.on_x.metric", json("engagement_rate < 0.04"))],
        )
        .unwrap_err();
        assert!(e.contains("edit it by hand"), "{e}");
    }

    #[test]
    fn a_file_of_several_documents_is_refused() {
        let doc = "triggers:\n  scheduled:\n    - daily:\n        time: \"09:00\"\n";
        let e = apply_to_text(
            &format!("{doc}---\n{doc}"),
            &[p("triggers.daily.time", json("11:00"))],
        )
        .unwrap_err();
        assert!(e.contains("2 YAML documents"), "{e}");
    }

    #[test]
    fn a_key_proposed_twice_is_refused() {
        let e = proposals(
            "{\"changes\": [{\"key\": \"triggers.a.time\", \"value\": \"10:00\"}, \
             {\"key\": \"triggers.a.time\", \"value\": \"11:00\"}]}",
        )
        .unwrap_err();
        assert!(e.contains("more than once"), "{e}");
        let e = apply_to_text(
            STUDIO,
            &[
                p("triggers.daily.time", json("10:00")),
                p("triggers.daily.time", json("11:00")),
            ],
        )
        .unwrap_err();
        assert!(e.contains("more than once"), "{e}");
    }

    #[test]
    fn invisible_and_direction_changing_characters_are_refused() {
        for v in [
            "10:00\u{202e}00:11",
            "10:00\u{2028}x",
            "1\u{200b}0:00",
            "\u{feff}10:00",
        ] {
            let e = apply_to_text(STUDIO, &[p("triggers.daily.time", json(v))]).unwrap_err();
            assert!(e.contains("invisible"), "{v:?}: {e}");
        }
        // Nor in a key's name, shown to the reviewer with the value.
        let e = apply_to_text(STUDIO, &[p("triggers.da\nily.time", json("10:00"))]).unwrap_err();
        assert!(e.contains("bad name"), "{e}");
        let e =
            apply_to_text(STUDIO, &[p("triggers.da\u{202e}ily.time", json("10:00"))]).unwrap_err();
        assert!(e.contains("bad name"), "{e}");
        // Other text outside ASCII is fine, on a line with multibyte text.
        let text = STUDIO.replace("# morning", "# mañana — ü");
        let (out, _) =
            apply_to_text(&text, &[p("triggers.daily.time", json("día 10:00"))]).unwrap();
        assert!(
            out.contains("time: \"día 10:00\"   # mañana — ü\n"),
            "{out}"
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
