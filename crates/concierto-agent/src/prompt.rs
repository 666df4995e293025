//! What the model executors say to a model, and how they read its answer.
//!
//! The system prompt is the role's prompt (the body of its Markdown file).
//! The user message is, in order:
//!
//! 1. the task's `instruction`;
//! 2. the step's labels, when it has any;
//! 3. the run's params as `## Params` (`- key: value`, bounded: see
//!    [`params_section`]), unless the step's context gave them as an input;
//! 4. each input as a section `## Input: <name>` with its content; an input
//!    whose `content_type` starts with `image/` is an image (an `http(s)://`
//!    URL, a `data:` URI or bare base64), sent as an image part or block by the
//!    HTTP executors and listed as its URL or `[image: <name>, <n> bytes
//!    base64]` in plain text;
//! 5. for a review task, what is asked (`ReviewAction`): a JSON verdict on the
//!    draft, a revision following the notes, or one verdict per draft of a
//!    batch, with the pass mark.
//!
//! An answer that is a JSON object (trimmed, optionally in a ```` ```json ````
//! fence) is `application/json`, anything else `text/markdown`; the verdict of
//! a review is read from it as the worker reads it (`concierto_core::structured`).

use std::time::Instant;

use concierto_core::config::ExecutorDef;
use concierto_core::roles::RoleDef;
use concierto_core::structured;
use concierto_proto::v1::{ReviewAction, Task, Usage, Verdict};
use serde_json::{Map, Value};

use crate::executor::Outcome;

/// A rendered prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The system prompt: the role's prompt.
    pub system: String,
    /// The user message, text and images in order (consecutive texts merged).
    pub parts: Vec<Part>,
}

/// A piece of the user message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Markdown text.
    Text(String),
    /// An image input.
    Image(Image),
}

/// An image input.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// The input's name.
    pub name: String,
    /// Where its bytes are.
    pub source: ImageSource,
}

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An `http(s)://` URL (or a `data:` URI that is not base64).
    Url(String),
    /// Base64 data with its media type (`image/png`).
    Base64 {
        /// The media type.
        media_type: String,
        /// The base64 text, without whitespace.
        data: String,
    },
}

impl ImageSource {
    /// From an input's content and content type.
    pub fn parse(content: &str, content_type: &str) -> ImageSource {
        let c = content.trim();
        let lower = c.chars().take(8).collect::<String>().to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return ImageSource::Url(c.to_string());
        }
        if lower.starts_with("data:") {
            if let Some((meta, data)) = c[5..].split_once(',')
                && let Some(media_type) = meta.strip_suffix(";base64")
            {
                let media_type = if media_type.is_empty() {
                    media_type_of(content_type)
                } else {
                    media_type.to_string()
                };
                return ImageSource::Base64 {
                    media_type,
                    data: data.split_whitespace().collect(),
                };
            }
            return ImageSource::Url(c.to_string());
        }
        ImageSource::Base64 {
            media_type: media_type_of(content_type),
            data: c.split_whitespace().collect(),
        }
    }

    /// As a URL: the URL itself, or a `data:` URI for base64.
    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Url(u) => u.clone(),
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// `image/png` from `image/png; charset=binary`.
fn media_type_of(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// True for an input that is an image.
pub fn is_image(content_type: &str) -> bool {
    content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("image/")
}

/// What a task with a review context asks: its `action`, or for one that
/// does not say, a review when it has no notes and a revision when it has.
/// `None` for a task that is not a review.
pub fn review_action(task: &Task) -> Option<ReviewAction> {
    let r = task.review.as_ref()?;
    Some(match ReviewAction::try_from(r.action) {
        Ok(ReviewAction::Review) => ReviewAction::Review,
        Ok(ReviewAction::Revise) => ReviewAction::Revise,
        Ok(ReviewAction::ReviewBatch) => ReviewAction::ReviewBatch,
        _ if r.notes.trim().is_empty() => ReviewAction::Review,
        _ => ReviewAction::Revise,
    })
}

/// The action as `CONCIERTO_REVIEW_ACTION` gives it: empty, `review`,
/// `revise` or `review_batch`.
pub fn review_action_name(task: &Task) -> &'static str {
    match review_action(task) {
        None => "",
        Some(ReviewAction::Revise) => "revise",
        Some(ReviewAction::ReviewBatch) => "review_batch",
        Some(_) => "review",
    }
}

impl Prompt {
    /// The prompt for `task` done as `role`.
    pub fn render(role: &RoleDef, task: &Task) -> Prompt {
        let mut b = Builder::default();
        b.text(task.instruction.trim());
        if !task.labels.is_empty() {
            b.text(&format!(
                "The output of this step is labelled: {}.",
                task.labels.join(", ")
            ));
        }
        if let Some(params) = params_section(task) {
            b.text(&params);
        }
        for (n, input) in task.inputs.iter().enumerate() {
            let name = if input.name.trim().is_empty() {
                format!("input {}", n + 1)
            } else {
                input.name.clone()
            };
            if is_image(&input.content_type) {
                b.text(&format!("## Input: {name} (image)"));
                b.parts.push(Part::Image(Image {
                    name,
                    source: ImageSource::parse(&input.content, &input.content_type),
                }));
            } else {
                b.text(&format!("## Input: {name}\n\n{}", input.content.trim()));
            }
        }
        if let (Some(r), Some(action)) = (&task.review, review_action(task)) {
            let pass = if r.pass_mark > 0.0 {
                format!(" A draft passes at score >= {}.", r.pass_mark)
            } else {
                String::new()
            };
            match action {
                ReviewAction::Revise => {
                    b.text(
                        "## Revision\n\nRevise the draft below following the reviewer's notes. \
                         Answer with the revised draft only.",
                    );
                    b.text(&format!("## Draft\n\n{}", r.draft.trim()));
                    b.text(&format!("## Reviewer's notes\n\n{}", r.notes.trim()));
                }
                ReviewAction::ReviewBatch => b.text(&format!(
                    "## Review\n\nReview each draft given as an input (inputs are named \
                     <run_id>/<step_id>). Answer ONLY with a JSON object {{\"items\": \
                     [{{\"subject\": \"<input name>\", \"pass\": bool, \"score\": number, \
                     \"notes\": \"...\"}}]}}.{pass}"
                )),
                _ => {
                    let mut at = Vec::new();
                    if !r.r#loop.trim().is_empty() {
                        at.push(format!("loop {}", r.r#loop.trim()));
                    }
                    at.push(format!("round {}", r.round.max(1)));
                    b.text(&format!(
                        "## Review\n\nReview the draft below ({}). Answer ONLY with a JSON \
                         object: {{\"pass\": bool, \"score\": number in 0..1, \"notes\": \
                         \"what to change\", \"reasons\": [..], \"labels\": [..]}}.{pass}",
                        at.join(", ")
                    ));
                    b.text(&format!("## Draft\n\n{}", r.draft.trim()));
                }
            }
        }
        Prompt {
            system: role.prompt.trim().to_string(),
            parts: b.parts,
        }
    }

    /// True when the user message has an image.
    pub fn has_images(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Image(_)))
    }

    /// The user message as text: images as their URL or `[image: <name>, <n>
    /// bytes base64]`.
    pub fn user_text(&self) -> String {
        let pieces: Vec<String> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Image(Image {
                    source: ImageSource::Url(u),
                    ..
                }) => u.clone(),
                Part::Image(Image {
                    name,
                    source: ImageSource::Base64 { data, .. },
                }) => format!("[image: {name}, {} bytes base64]", data.len()),
            })
            .collect();
        pieces.join("\n\n")
    }

    /// The whole prompt as plain text, as a command reads it on stdin: the
    /// system prompt, a line `---`, then the user message.
    pub fn plain_text(&self) -> String {
        format!("{}\n---\n{}\n", self.system, self.user_text())
    }
}

/// Params shown in a prompt at most.
pub const MAX_PROMPT_PARAMS: usize = 64;
/// Bytes of one param value shown in a prompt at most.
pub const MAX_PROMPT_PARAM_BYTES: usize = 1024;

/// `## Params`: the task's params, `- key: value` sorted by key, each value
/// cut to [`MAX_PROMPT_PARAM_BYTES`], at most [`MAX_PROMPT_PARAMS`]. `None`
/// when it has none, only `builtin.*` test params, or when the step's context
/// already gave them as the input `params`.
pub fn params_section(task: &Task) -> Option<String> {
    if task.inputs.iter().any(|i| i.name == "params") {
        return None;
    }
    let mut keys: Vec<&String> = task
        .params
        .keys()
        .filter(|k| !k.starts_with("builtin."))
        .collect();
    if keys.is_empty() {
        return None;
    }
    keys.sort();
    let mut out = String::from("## Params");
    for k in keys.iter().take(MAX_PROMPT_PARAMS) {
        let v = task.params.get(*k).map(String::as_str).unwrap_or_default();
        let mut end = v.len().min(MAX_PROMPT_PARAM_BYTES);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        out.push_str(&format!("\n- {k}: {}", &v[..end]));
        if end < v.len() {
            out.push_str(" …(cut)");
        }
    }
    if keys.len() > MAX_PROMPT_PARAMS {
        out.push_str(&format!(
            "\n[cut: {MAX_PROMPT_PARAMS} of {} params shown]",
            keys.len()
        ));
    }
    Some(out)
}

#[derive(Default)]
struct Builder {
    parts: Vec<Part>,
}

impl Builder {
    /// Adds a paragraph, merged with the text before it.
    fn text(&mut self, t: &str) {
        if t.is_empty() {
            return;
        }
        match self.parts.last_mut() {
            Some(Part::Text(prev)) => {
                prev.push_str("\n\n");
                prev.push_str(t);
            }
            _ => self.parts.push(Part::Text(t.to_string())),
        }
    }
}

/// Whitespace-separated words: the token estimate of executors that get no
/// count from their model.
pub fn word_count(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// `answer` as a JSON object: trimmed, optionally inside a ```` ``` ```` or
/// ```` ```json ```` fence. Returns the JSON text and the object.
pub fn json_object(answer: &str) -> Option<(String, Map<String, Value>)> {
    let t = answer.trim();
    let inner = match t.strip_prefix("```") {
        Some(rest) => {
            let rest = rest.strip_suffix("```")?;
            let (first, body) = rest.split_once('\n')?;
            let lang = first.trim().to_ascii_lowercase();
            if !(lang.is_empty() || lang == "json") {
                return None;
            }
            body.trim()
        }
        None => t,
    };
    match serde_json::from_str::<Value>(inner) {
        Ok(Value::Object(m)) => Some((inner.to_string(), m)),
        _ => None,
    }
}

/// A successful outcome for `answer`: `application/json` (the bare JSON) when
/// it is a JSON object, else `text/markdown`. For a review, the verdict and
/// its labels are read as the worker reads any model's answer
/// ([`concierto_core::structured::verdict`]).
pub fn answer_outcome(task: &Task, answer: &str) -> Outcome {
    let mut out = match json_object(answer) {
        Some((json, _)) => Outcome::succeeded(json, "application/json"),
        None => Outcome::succeeded(answer.trim().to_string(), "text/markdown"),
    };
    if review_action(task) == Some(ReviewAction::Review)
        && let Some(v) = structured::verdict(answer)
    {
        out.verdict = Some(Verdict {
            pass: v.pass,
            score: v.score,
            notes: v.notes,
            reasons: v.reasons,
        });
        out.labels = v.labels;
    }
    out
}

/// `details` key: the executor's configured name (`local-llm`).
pub const DETAIL_EXECUTOR_NAME: &str = "executor_name";

/// Fills the usage of `out` (executor kind, model, tokens, latency since
/// `started`, cost from the executor's prices) and `executor_name`.
pub(crate) fn stamp(
    mut out: Outcome,
    def: &ExecutorDef,
    model: &str,
    tokens: (u64, u64),
    started: Instant,
) -> Outcome {
    let (input_tokens, output_tokens) = tokens;
    out.usage = Usage {
        executor: def.kind.as_str().to_string(),
        model: model.to_string(),
        input_tokens,
        output_tokens,
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        cost_usd: def
            .prices
            .map_or(0.0, |p| p.cost_usd(input_tokens, output_tokens)),
    };
    out.details
        .insert(DETAIL_EXECUTOR_NAME.into(), def.name.clone());
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use concierto_proto::v1::{ReviewContext, TaskInput};

    use super::*;

    fn role() -> RoleDef {
        RoleDef {
            name: "content-creator".into(),
            description: "Writes.".into(),
            tools: Vec::new(),
            model: None,
            executor: None,
            color: None,
            prompt: "You write warm posts.\n".into(),
            file: PathBuf::from("agents/content-creator.md"),
            line: 2,
        }
    }

    fn input(name: &str, content: &str, content_type: &str) -> TaskInput {
        TaskInput {
            name: name.into(),
            content: content.into(),
            content_type: content_type.into(),
        }
    }

    #[test]
    fn instruction_labels_and_inputs_make_the_user_message() {
        let task = Task {
            instruction: "Write a post.".into(),
            labels: vec!["campaign_launch".into()],
            inputs: vec![
                input("trigger", "Packaging is rising.", "text/plain"),
                input("moodboard", "https://img.example/a.png", "image/png"),
                input("logo", "iVBORw0K GgoA", "image/png"),
                input("photo", "data:image/jpeg;base64,/9j/4AAQ", "image/jpeg"),
            ],
            ..Default::default()
        };
        let p = Prompt::render(&role(), &task);
        assert_eq!(p.system, "You write warm posts.");
        assert_eq!(p.parts.len(), 6, "{p:#?}");
        assert_eq!(
            p.parts[0],
            Part::Text(
                "Write a post.\n\nThe output of this step is labelled: campaign_launch.\n\n\
                 ## Input: trigger\n\nPackaging is rising.\n\n## Input: moodboard (image)"
                    .into()
            )
        );
        assert_eq!(
            p.parts[1],
            Part::Image(Image {
                name: "moodboard".into(),
                source: ImageSource::Url("https://img.example/a.png".into())
            })
        );
        assert_eq!(
            p.parts[3],
            Part::Image(Image {
                name: "logo".into(),
                source: ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: "iVBORw0KGgoA".into()
                }
            })
        );
        let Part::Image(photo) = &p.parts[5] else {
            panic!("image")
        };
        assert_eq!(photo.source.to_url(), "data:image/jpeg;base64,/9j/4AAQ");
        let plain = p.plain_text();
        assert!(
            plain.starts_with("You write warm posts.\n---\nWrite a post."),
            "{plain}"
        );
        assert!(plain.contains("https://img.example/a.png"), "{plain}");
        assert!(plain.contains("[image: logo, 12 bytes base64]"), "{plain}");
        assert!(plain.contains("[image: photo, 8 bytes base64]"), "{plain}");
    }

    fn review(action: ReviewAction, notes: &str) -> Task {
        Task {
            instruction: "Check it.".into(),
            review: Some(ReviewContext {
                r#loop: "creator_to_reviewer".into(),
                round: 2,
                subject_step: "draft".into(),
                draft: "The draft text.".into(),
                notes: notes.into(),
                action: action as i32,
                pass_mark: 0.85,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_review_action_asks_its_own_answer() {
        let t = Prompt::render(&role(), &review(ReviewAction::Review, "")).user_text();
        assert!(
            t.contains("Review the draft below (loop creator_to_reviewer, round 2). Answer ONLY with a JSON object: {\"pass\": bool"),
            "{t}"
        );
        assert!(t.contains("A draft passes at score >= 0.85."), "{t}");
        assert!(t.ends_with("## Draft\n\nThe draft text."), "{t}");

        let t = Prompt::render(&role(), &review(ReviewAction::Revise, "Shorter.")).user_text();
        assert!(t.contains("Revise the draft below following the reviewer's notes. Answer with the revised draft only."), "{t}");
        assert!(t.contains("## Draft\n\nThe draft text."), "{t}");
        assert!(t.ends_with("## Reviewer's notes\n\nShorter."), "{t}");

        let t = Prompt::render(&role(), &review(ReviewAction::ReviewBatch, "")).user_text();
        assert!(t.contains("Review each draft given as an input (inputs are named <run_id>/<step_id>). Answer ONLY with a JSON object {\"items\": [{\"subject\": \"<input name>\""), "{t}");
        assert!(t.contains("A draft passes at score >= 0.85."), "{t}");

        assert_eq!(
            review_action(&review(ReviewAction::Unspecified, "notes")),
            Some(ReviewAction::Revise)
        );
        assert_eq!(
            review_action_name(&review(ReviewAction::Unspecified, "")),
            "review"
        );
        assert_eq!(review_action_name(&Task::default()), "");
    }

    #[test]
    fn json_answers_are_json_and_reviews_give_a_verdict() {
        let task = review(ReviewAction::Review, "");
        let out = answer_outcome(
            &task,
            "```json\n{\"score\": 0.9, \"notes\": \"Fine.\", \"reasons\": [\"tone\"], \"labels\": [\"major_brand_changes\"]}\n```\n",
        );
        assert_eq!(out.content_type, "application/json");
        assert!(
            out.output.starts_with('{') && out.output.ends_with('}'),
            "{}",
            out.output
        );
        let v = out.verdict.expect("verdict");
        assert!(v.pass);
        assert_eq!(v.score, 0.9);
        assert_eq!(v.notes, "Fine.");
        assert_eq!(v.reasons, ["tone"]);
        assert_eq!(out.labels, ["major_brand_changes"]);

        let out = answer_outcome(&Task::default(), "# Title\n\nText {not json}\n");
        assert_eq!(out.content_type, "text/markdown");
        assert_eq!(out.output, "# Title\n\nText {not json}");
        assert!(out.verdict.is_none());
        assert_eq!(
            answer_outcome(&Task::default(), "[1, 2]").content_type,
            "text/markdown"
        );
        assert_eq!(word_count(" a  b\nc "), 3);
    }

    #[test]
    fn params_come_before_the_inputs_bounded_and_once() {
        let mut task = Task {
            instruction: "Write a post.".into(),
            inputs: vec![input("trigger", "Fired.", "text/plain")],
            ..Default::default()
        };
        task.params
            .insert("brief".into(), "Spring range, recycled paper".into());
        task.params.insert("builtin.sleep_ms".into(), "5".into());
        task.params.insert("long".into(), "é".repeat(2000));
        let text = Prompt::render(&role(), &task).user_text();
        let params = text.find("## Params\n- brief: Spring range, recycled paper");
        let first_input = text.find("## Input: trigger");
        assert!(params.is_some() && params < first_input, "{text}");
        assert!(!text.contains("builtin.sleep_ms"), "test params stay out");
        assert!(text.contains(" …(cut)"), "a long value is cut");
        assert!(
            text.len() < 2 * MAX_PROMPT_PARAM_BYTES + 200,
            "{}",
            text.len()
        );

        // Given by the step's context as an input: not twice.
        task.inputs
            .push(input("params", "- brief: Spring range", "text/markdown"));
        let text = Prompt::render(&role(), &task).user_text();
        assert!(!text.contains("## Params"), "{text}");
        assert!(text.contains("## Input: params"));

        task.params.clear();
        task.inputs.pop();
        assert!(params_section(&task).is_none());
    }
}
