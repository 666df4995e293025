//! `Write` and `Edit`: they change the step's deliverable held in the
//! [`ToolCx`] (what the step hands on), never a file. The deliverable is at
//! most [`MAX_DELIVERABLE_BYTES`].

use async_trait::async_trait;
use serde_json::Value;

use super::args::{self, schema};
use super::{Tool, ToolCx, ToolError, ToolSpec};

/// Largest deliverable `Write` and `Edit` make (256 KiB).
pub const MAX_DELIVERABLE_BYTES: usize = 256 * 1024;

fn too_large(n: usize) -> ToolError {
    ToolError::new(format!(
        "the deliverable would be {n} bytes; at most {MAX_DELIVERABLE_BYTES} are kept"
    ))
}

/// `Write` {content}: replaces the deliverable. `file_path`, if the model
/// passes one out of habit, is ignored (nothing is written to disk).
#[derive(Debug, Clone, Default)]
pub struct WriteTool;

#[async_trait]
impl Tool for WriteTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "Write".into(),
            description: "Write the step's deliverable (the document this step hands on), \
                          replacing what was written before. Nothing is written to disk."
                .into(),
            input_schema: schema(
                &[(
                    "content",
                    "string",
                    "The whole deliverable (Markdown or text).",
                )],
                &["content"],
            ),
        }
    }

    async fn call(&self, args: Value, cx: &ToolCx) -> Result<String, ToolError> {
        let m = args::object(&args)?;
        let content = match m.get("content") {
            Some(Value::String(s)) if s.len() > MAX_DELIVERABLE_BYTES => {
                return Err(too_large(s.len()));
            }
            _ => args::text(m, "content", MAX_DELIVERABLE_BYTES)?,
        };
        let mut d = cx
            .deliverable
            .lock()
            .map_err(|_| ToolError::new("the deliverable is unavailable"))?;
        *d = Some(content.to_string());
        Ok(format!(
            "wrote the deliverable ({} bytes, {} lines)",
            content.len(),
            content.lines().count()
        ))
    }
}

/// `Edit` {old_string, new_string, replace_all?}: replaces text in the deliverable.
#[derive(Debug, Clone, Default)]
pub struct EditTool;

#[async_trait]
impl Tool for EditTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "Edit".into(),
            description: "Replace exact text in the step's deliverable (written with Write). \
                          old_string must occur once unless replace_all is true."
                .into(),
            input_schema: schema(
                &[
                    ("old_string", "string", "The exact text to replace."),
                    ("new_string", "string", "What replaces it."),
                    (
                        "replace_all",
                        "boolean",
                        "Replace every occurrence (default false).",
                    ),
                ],
                &["old_string", "new_string"],
            ),
        }
    }

    async fn call(&self, args: Value, cx: &ToolCx) -> Result<String, ToolError> {
        let m = args::object(&args)?;
        let old = args::text(m, "old_string", MAX_DELIVERABLE_BYTES)?;
        let new = args::text(m, "new_string", MAX_DELIVERABLE_BYTES)?;
        let all = args::opt_flag(m, "replace_all")?.unwrap_or(false);
        if old.is_empty() {
            return Err(ToolError::new(
                "old_string is empty: say what text to replace",
            ));
        }
        if old == new {
            return Err(ToolError::new("old_string and new_string are the same"));
        }
        let mut d = cx
            .deliverable
            .lock()
            .map_err(|_| ToolError::new("the deliverable is unavailable"))?;
        let Some(doc) = d.as_mut() else {
            return Err(ToolError::new(
                "there is no deliverable yet: write it with Write first",
            ));
        };
        let n = doc.matches(old).count();
        if n == 0 {
            return Err(ToolError::new(
                "old_string was not found in the deliverable (it must match exactly, whitespace included)",
            ));
        }
        if n > 1 && !all {
            return Err(ToolError::new(format!(
                "old_string occurs {n} times in the deliverable: give more surrounding text, or set replace_all"
            )));
        }
        let replaced = if all {
            doc.replace(old, new)
        } else {
            doc.replacen(old, new, 1)
        };
        if replaced.len() > MAX_DELIVERABLE_BYTES {
            return Err(too_large(replaced.len()));
        }
        *doc = replaced;
        Ok(format!(
            "replaced {} occurrence{} (the deliverable is now {} bytes)",
            if all { n } else { 1 },
            if all && n != 1 { "s" } else { "" },
            doc.len()
        ))
    }
}
