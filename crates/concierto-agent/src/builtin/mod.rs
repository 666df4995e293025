//! The `builtin` executor: deterministic, offline work, so that a studio does
//! real work with no API key and tests get the same answer every time. Every
//! output says it came from `builtin` (a footer in Markdown, `generated_by` in
//! JSON; `Usage.executor = "builtin"`, `Usage.model = "builtin-v1"`, tokens
//! estimated as whitespace-separated words).
//!
//! What it does, by role (the role's name, or the `builtin.as` parameter):
//!
//! | role | output |
//! |---|---|
//! | `content-creator` | Markdown pieces from a template: headline and variant, post, caption, call to action, notes — built from the instruction and the inputs' key phrases (most frequent non-stopword terms and repeated two-word phrases). One piece, or one per angle (`### Angles` in an input) when the instruction asks for pieces. Hype words and risky claims from the brand rules never make it in. |
//! | `brand-guardian` | JSON verdict: the draft (the review's draft, else the inputs other than `trigger`) scored in 0..1 against the [`BrandRules`]; `pass` when the score is at least 0.85 and no claim is risky. Also a `Verdict` and, for a change to the brand itself, the label `major_brand_changes`. |
//! | `analytics-reporter` | Markdown report of the figures in the inputs: count, min, max, mean (percentages apart), largest and smallest with their labels, a details table. |
//! | `feedback-synthesizer` | JSON: `category` (brand, technical, growth, other) by keyword scoring and the `roles` it goes to — brand → brand-guardian, creative-director; technical → backend-architect, test-writer-fixer; growth → growth-hacker, analytics-reporter; other → studio-orchestrator — with confidence, reason (quoting the key sentence), summary, urgency. |
//! | any other role | Markdown brief: title from the instruction, key points (the input sentences that carry the most key terms), key terms, angles when the instruction asks for them, next actions, sources. |
//!
//! **Reviews and revisions.** A task whose `review.action` is `REVIEW` (or,
//! when unset, whose review notes are empty) is a *review*: `brand-guardian`
//! scores it for the brand, and any other role except `content-creator` and
//! `feedback-synthesizer` checks its completeness (substance, structure, no
//! placeholders; figures, for `analytics-reporter`) and answers with a JSON
//! verdict; the review's `pass_mark` replaces the rules' `pass_score`.
//! `REVIEW_BATCH` judges every input (one draft each, named `<run>/<step>`) the
//! same way and answers `{"items": [{"subject", "pass", "score", "notes"}]}`.
//! `REVISE` is a *revision*: the output lists the notes as addressed.
//!
//! **Test parameters** (`Task.params`), read before any work:
//!
//! | parameter | effect |
//! |---|---|
//! | `builtin.noop: "true"` | returns at once with a one-line output (throughput benchmarks) |
//! | `builtin.sleep_ms: "<n>"` | takes `n` ms first (a slow task) |
//! | `builtin.fail: "retryable"` or `"fatal"` | fails with status `RETRYABLE` or `FAILED` (after any sleep) |
//! | `builtin.fail_attempts: "<n>"` | with `builtin.fail`: fails only while `Task.attempt <= n`, then works (retries) |
//! | `builtin.as: "<role>"` | does the work of another role |

mod analytics;
mod brand;
mod brief;
mod content;
mod feedback;
mod review;
pub mod text;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use concierto_core::config::Studio;
use concierto_core::roles::RoleDef;
use concierto_proto::v1::{ReviewAction, Task, Usage, Verdict};

pub use analytics::{Summary, summarise};
pub use brand::{BrandReport, BrandRules, Checked, MAJOR_BRAND_CHANGES, RULES_FILES};
pub use feedback::{CATEGORIES, categorise, roles_for};

use crate::error::AgentError;
use crate::executor::{Executor, Outcome};

/// The executor's name.
pub const BUILTIN: &str = "builtin";
/// The "model" builtin results report.
pub const BUILTIN_MODEL: &str = "builtin-v1";
/// Ends every Markdown output.
pub const FOOTER: &str = "_Drafted by the builtin executor (builtin-v1): deterministic and offline; no model was called._";
/// The `generated_by` field of every JSON output.
pub const GENERATED_BY: &str = "builtin executor (builtin-v1), deterministic and offline";

/// `builtin.noop`: return at once.
pub const PARAM_NOOP: &str = "builtin.noop";
/// `builtin.sleep_ms`: take this long first.
pub const PARAM_SLEEP_MS: &str = "builtin.sleep_ms";
/// `builtin.fail`: `retryable` or `fatal`.
pub const PARAM_FAIL: &str = "builtin.fail";
/// `builtin.fail_attempts`: fail only while the attempt is at most this.
pub const PARAM_FAIL_ATTEMPTS: &str = "builtin.fail_attempts";
/// `builtin.as`: work as this role.
pub const PARAM_AS: &str = "builtin.as";

/// The folder, under a studio's base folder, holding its brand rules.
pub const BRAND_DIR: &str = "brand";

/// The deterministic offline executor. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct BuiltinExecutor {
    rules: BrandRules,
    /// The studio's feedback routing table (`feedback_capture.routing`);
    /// `None`: the seed's.
    routing: Option<indexmap::IndexMap<String, Vec<String>>>,
}

/// What a role's work made, before usage is added.
pub(crate) struct Work {
    pub output: String,
    pub content_type: &'static str,
    pub labels: Vec<String>,
    pub verdict: Option<Verdict>,
}

impl Work {
    /// A Markdown document: `body`, then the rule and the builtin footer.
    pub(crate) fn markdown(mut body: String) -> Work {
        body.push_str("\n---\n");
        body.push_str(FOOTER);
        body.push('\n');
        Work {
            output: body,
            content_type: "text/markdown",
            labels: Vec::new(),
            verdict: None,
        }
    }
}

impl BuiltinExecutor {
    /// With the brand rules of `brand_dir` (its `rules.yaml`, `rules.yml` or
    /// `rules.json`; the defaults when it has none), or the defaults when
    /// `None`. A folder that does not exist, or a rules file that does not
    /// parse, is an error.
    pub fn new(brand_dir: Option<PathBuf>) -> Result<Self, AgentError> {
        let rules = match brand_dir {
            Some(dir) => BrandRules::load_dir(&dir)?,
            None => BrandRules::default(),
        };
        Ok(Self::with_rules(rules))
    }

    /// With these brand rules.
    pub fn with_rules(rules: BrandRules) -> Self {
        BuiltinExecutor {
            rules,
            routing: None,
        }
    }

    /// For a studio: the rules in its `brand/` folder when there is one.
    pub fn for_studio(studio: &Studio) -> Result<Self, AgentError> {
        let dir = studio.base_dir.join(BRAND_DIR);
        let mut ex = Self::new(dir.is_dir().then_some(dir))?;
        ex.routing = Some(concierto_core::config::keys::routing_table(studio));
        Ok(ex)
    }

    /// The brand rules in use.
    pub fn rules(&self) -> &BrandRules {
        &self.rules
    }

    /// The work itself, without the test parameters or any waiting:
    /// deterministic — the same role and task give the same outcome.
    pub fn work(&self, role: &RoleDef, task: &Task) -> Outcome {
        let kind = task
            .params
            .get(PARAM_AS)
            .map_or(role.name.as_str(), String::as_str);
        let action = task.review.as_ref().map(|r| match r.action() {
            ReviewAction::Unspecified if r.notes.trim().is_empty() => ReviewAction::Review,
            ReviewAction::Unspecified => ReviewAction::Revise,
            a => a,
        });
        let work = match (kind, action) {
            (_, Some(ReviewAction::ReviewBatch)) => review::batch(kind, task, &self.rules),
            ("brand-guardian", _) => review::brand(task, &self.rules),
            ("content-creator", _) => content::draft(task, &self.rules),
            ("feedback-synthesizer", _) => feedback::synthesize(task, self.routing.as_ref()),
            (_, Some(ReviewAction::Review)) => {
                review::completeness(kind, task, self.rules.pass_score)
            }
            ("analytics-reporter", _) => analytics::report(task),
            _ => brief::brief(role, task, &self.rules),
        };
        let mut out = Outcome::succeeded(work.output, work.content_type);
        out.labels = work.labels;
        out.verdict = work.verdict;
        self.finish(role, task, out)
    }

    /// Adds usage: executor, model, estimated tokens.
    fn finish(&self, role: &RoleDef, task: &Task, mut out: Outcome) -> Outcome {
        let mut input =
            text::token_estimate(&role.prompt) + text::token_estimate(&task.instruction);
        for i in &task.inputs {
            input += text::token_estimate(&i.content);
        }
        if let Some(r) = &task.review {
            input += text::token_estimate(&r.draft) + text::token_estimate(&r.notes);
        }
        out.usage = Usage {
            executor: BUILTIN.to_string(),
            model: BUILTIN_MODEL.to_string(),
            input_tokens: input,
            output_tokens: text::token_estimate(&out.output),
            latency_ms: 0,
            cost_usd: 0.0,
        };
        out
    }
}

#[async_trait]
impl Executor for BuiltinExecutor {
    fn name(&self) -> &str {
        BUILTIN
    }

    fn model(&self, _role: &RoleDef) -> String {
        BUILTIN_MODEL.to_string()
    }

    async fn execute(&self, role: &RoleDef, task: &Task) -> Outcome {
        let p = &task.params;
        if p.get(PARAM_NOOP).is_some_and(|v| truthy(v)) {
            let out = Outcome::succeeded("noop: builtin executor, no work done", "text/plain");
            return self.finish(role, task, out);
        }
        if let Some(v) = p.get(PARAM_SLEEP_MS) {
            match v.trim().parse::<u64>() {
                Ok(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Err(_) => {
                    let out = Outcome::failed(format!(
                        "{PARAM_SLEEP_MS} must be a whole number of milliseconds, found {v:?}"
                    ));
                    return self.finish(role, task, out);
                }
            }
        }
        if let Some(mode) = p.get(PARAM_FAIL) {
            let applies = match p.get(PARAM_FAIL_ATTEMPTS) {
                None => true,
                Some(n) => match n.trim().parse::<u32>() {
                    Ok(n) => task.attempt <= n,
                    Err(_) => {
                        let out = Outcome::failed(format!(
                            "{PARAM_FAIL_ATTEMPTS} must be a whole number, found {n:?}"
                        ));
                        return self.finish(role, task, out);
                    }
                },
            };
            if applies {
                let out = match mode.trim() {
                    "retryable" => Outcome::retryable(format!(
                        "{PARAM_FAIL}=retryable: the builtin executor fails on purpose (test parameter)"
                    )),
                    "fatal" => Outcome::failed(format!(
                        "{PARAM_FAIL}=fatal: the builtin executor fails on purpose (test parameter)"
                    )),
                    other => Outcome::failed(format!(
                        "{PARAM_FAIL} must be \"retryable\" or \"fatal\", found {other:?}"
                    )),
                };
                return self.finish(role, task, out);
            }
        }
        // The data a step's `context:` brought (metrics, runs, the brand guide,
        // ...) is for models to read; the offline executor works from the
        // step's own inputs, so a brand guide's list of banned words is not
        // scored as if it were the draft.
        self.work(role, &without_context(task))
    }
}

/// `task` without the inputs its `context` list resolved into.
fn without_context(task: &Task) -> Task {
    if task.context.is_empty() {
        return task.clone();
    }
    let mut t = task.clone();
    t.inputs
        .retain(|i| !task.context.iter().any(|c| c.kind == i.name));
    t
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    )
}

/// The inputs with text, as `(name, content)`, each without the sections that
/// are about the work rather than the work itself (see [`substance`]); an
/// unnamed input is called `input <n>`.
pub(crate) fn input_texts(task: &Task) -> Vec<(String, String)> {
    task.inputs
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let name = if i.name.trim().is_empty() {
                format!("input {}", n + 1)
            } else {
                i.name.clone()
            };
            (name, substance(&i.content))
        })
        .filter(|(_, c)| !c.trim().is_empty())
        .collect()
}

/// Headings of sections that talk about the work (sources, notes, next
/// actions, ...) rather than being it.
const META_SECTIONS: &[&str] = &[
    "next actions",
    "sources",
    "notes for reviewers",
    "key terms",
    "what to do",
    "revision",
];

/// Metadata lines (`task: ...`) of Markdown outputs.
const META_LINES: &[&str] = &["role:", "task:", "channel:", "audience:"];

/// `text` without meta sections, metadata lines and the builtin footer, so an
/// earlier step's bookkeeping does not become the next step's content.
pub fn substance(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            let heading = t.trim_start_matches('#').trim().to_lowercase();
            skipping = META_SECTIONS.iter().any(|m| heading.starts_with(m));
            if skipping {
                continue;
            }
        }
        if skipping || t == FOOTER || META_LINES.iter().any(|m| t.to_lowercase().starts_with(m)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Pretty JSON (field order as built).
pub(crate) fn to_json(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
