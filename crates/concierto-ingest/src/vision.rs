//! Visual concepts from a vision-capable model: when a source's role (its
//! `indexer` or `processor`) runs on an `openai` or `anthropic` executor, every
//! new or changed picture of that source is shown to the model, asked for the
//! visual concepts and creative techniques in it, and the answer is added to
//! the item's concepts (next to those read from captions, alt text and file
//! names).
//!
//! The picture is announced first; the model is asked afterwards, so a slow or
//! failing model never holds up `on_new_inspiration`. Pictures waiting for the
//! model are kept in the store (tree [`crate::TREE`], key `vision/<id>`) and
//! asked again at the source's next cycle if the service stopped meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use concierto_agent::{Executor, executor_def, executor_for, executor_name};
use concierto_core::config::{ContentSource, ExecutorKind, Studio};
use concierto_core::roles::RoleDef;
use concierto_core::structured::json_object;
use concierto_proto::v1::{Task, TaskInput, TaskStatus};
use serde_json::Value;

/// The question asked about each picture.
pub const INSTRUCTION: &str = "List the visual concepts and creative techniques in this picture: \
style and movement (e.g. brutalism, swiss style), composition (e.g. bento grid, asymmetry), colour \
treatment (e.g. duotone, gradient mesh), type treatment, medium and technique (e.g. 3d render, \
collage, risograph). Answer with JSON only: {\"concepts\": [\"...\"]}, short lowercase terms, at most 12.";

/// Largest picture sent to a model (4 MiB); larger ones are skipped.
pub const MAX_IMAGE_BYTES: usize = 4 << 20;

/// The model behind each source that has one.
#[derive(Clone, Default)]
pub struct Vision {
    by_source: HashMap<String, (Arc<dyn Executor>, RoleDef)>,
}

impl std::fmt::Debug for Vision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sources: Vec<(&String, &str)> = self
            .by_source
            .iter()
            .map(|(s, (e, _))| (s, e.name()))
            .collect();
        sources.sort();
        f.debug_struct("Vision").field("sources", &sources).finish()
    }
}

impl Vision {
    /// Asks `executor`, as `role`, about the pictures of `source`.
    pub fn with(mut self, source: &str, executor: Arc<dyn Executor>, role: RoleDef) -> Self {
        self.by_source.insert(source.to_string(), (executor, role));
        self
    }

    /// The sources of `studio` whose role runs on a model executor (`openai`,
    /// `anthropic`), each with that executor. A source whose executor cannot
    /// be built (a missing API key) is left out with a warning.
    pub fn for_studio(studio: &Studio) -> Self {
        let mut out = Vision::default();
        for source in &studio.content_sources {
            if let Some((executor, role)) = model_of(studio, source) {
                out = out.with(&source.name, executor, role);
            }
        }
        out
    }

    /// Whether any source has a model.
    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }

    /// Whether `source` has a model.
    pub fn covers(&self, source: &str) -> bool {
        self.by_source.contains_key(source)
    }

    /// Asks the model of `source` about one picture; the concepts it named.
    pub async fn concepts(
        &self,
        source: &str,
        id: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Vec<String>, String> {
        let Some((executor, role)) = self.by_source.get(source) else {
            return Ok(Vec::new());
        };
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(format!(
                "the picture is {} bytes, over the {MAX_IMAGE_BYTES} sent to a model",
                bytes.len()
            ));
        }
        let task = Task {
            task_id: format!("vision/{id}"),
            run_id: format!("vision/{id}"),
            step_id: "concepts".into(),
            attempt: 1,
            role: role.name.clone(),
            workflow: "ingest-vision".into(),
            instruction: INSTRUCTION.into(),
            inputs: vec![TaskInput {
                name: "picture".into(),
                content: base64::engine::general_purpose::STANDARD.encode(bytes),
                content_type: media_type.into(),
            }],
            ..Default::default()
        };
        let out = executor.execute(role, &task).await;
        if out.status != TaskStatus::Succeeded {
            return Err(format!(
                "{} answered {:?}: {}",
                executor.name(),
                out.status,
                out.error
            ));
        }
        parse_concepts(&out.output)
            .ok_or_else(|| format!("no concepts in the answer: {}", shorten(&out.output, 200)))
    }
}

/// Which sources [`Vision::for_studio`] would give a model, and which
/// executor: `source=executor` pairs, sorted (no executor is built). A running
/// ingester keeps the vision models it started with; this tells when a
/// changed studio would give others.
pub fn vision_sources(studio: &Studio) -> String {
    let mut pairs: Vec<String> = studio
        .content_sources
        .iter()
        .filter_map(|source| {
            let name = executor_name(studio, &source.role);
            let def = executor_def(studio, &name)?;
            matches!(def.kind, ExecutorKind::OpenAi | ExecutorKind::Anthropic)
                .then(|| format!("{}={name}", source.name))
        })
        .collect();
    pairs.sort();
    pairs.join(", ")
}

fn model_of(studio: &Studio, source: &ContentSource) -> Option<(Arc<dyn Executor>, RoleDef)> {
    let role = studio.roles.get(&source.role)?;
    let def = executor_def(studio, &executor_name(studio, &source.role))?;
    if !matches!(def.kind, ExecutorKind::OpenAi | ExecutorKind::Anthropic) {
        return None;
    }
    match executor_for(studio, &source.role) {
        Ok(e) => Some((e, role.clone())),
        Err(e) => {
            tracing::warn!(source = %source.name, role = %source.role, error = %e, "no vision model for this source");
            None
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The concepts in a model's answer: `{"concepts": [...]}` (also in a fenced
/// block or inside prose), or a bare JSON array of strings.
pub fn parse_concepts(answer: &str) -> Option<Vec<String>> {
    let list = match json_object(answer) {
        Some(mut m) => m.remove("concepts")?,
        None => {
            let t = answer.trim();
            let (a, b) = (t.find('[')?, t.rfind(']')?);
            serde_json::from_str::<Value>(t.get(a..=b)?).ok()?
        }
    };
    let Value::Array(items) = list else {
        return None;
    };
    Some(
        items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .take(12)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_the_shapes_models_give() {
        assert_eq!(
            parse_concepts(r#"{"concepts": ["Duotone", " bento grid "]}"#),
            Some(vec!["duotone".to_string(), "bento grid".to_string()])
        );
        assert_eq!(
            parse_concepts("Here you go:\n```json\n{\"concepts\": [\"risograph\"]}\n```"),
            Some(vec!["risograph".to_string()])
        );
        assert_eq!(
            parse_concepts(r#"["collage", 3, "brutalism"]"#),
            Some(vec!["collage".to_string(), "brutalism".to_string()])
        );
        assert_eq!(parse_concepts("I see a cat."), None);
        assert_eq!(parse_concepts(r#"{"labels": ["x"]}"#), None);
    }
}
