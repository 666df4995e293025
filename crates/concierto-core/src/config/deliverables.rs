//! Deliverables and publishers: a workflow's `deliverables: [step ids]` (the
//! outputs that leave the system once a run succeeds) and the top-level
//! `publishers:` map, each publisher naming the workflows it takes
//! (`workflows: [names]`; absent: every workflow with deliverables).
//!
//! ```yaml
//! publishers:
//!   drafts:   {kind: folder, path: ./deliverables}
//!   cms:      {kind: webhook, url: "https://cms.example/hook", secret_env: CMS_HOOK_KEY, max_attempts: 8}
//!   team:     {kind: slack, channel: "#content", token_env: SLACK_BOT_TOKEN, workflows: [daily_content_generation]}
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::model::Workflow;
use super::spans::{child, item};
use super::walk::Walker;

/// Most publishers a studio may name.
pub const MAX_PUBLISHERS: usize = 32;
/// Most deliverable steps per workflow.
pub const MAX_DELIVERABLE_STEPS: usize = 16;

/// What the studio publishes, and where.
#[derive(Debug, Clone, Default)]
pub struct Publishing {
    /// Deliverable step ids by workflow (only workflows that name some).
    pub deliverables: IndexMap<String, Vec<String>>,
    /// Publishers by name, in file order.
    pub publishers: IndexMap<String, PublisherDef>,
}

impl Publishing {
    /// The deliverable steps of `workflow` (empty: none).
    pub fn steps_of(&self, workflow: &str) -> &[String] {
        self.deliverables
            .get(workflow)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The publishers that take `workflow`'s deliverables, in file order.
    pub fn publishers_for<'a>(
        &'a self,
        workflow: &'a str,
    ) -> impl Iterator<Item = &'a PublisherDef> + 'a {
        self.publishers
            .values()
            .filter(move |p| p.workflows.is_empty() || p.workflows.iter().any(|w| w == workflow))
    }
}

/// One named publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct PublisherDef {
    /// Its name in the studio file.
    pub name: String,
    /// Where it sends deliverables.
    pub kind: PublisherKind,
    /// Workflows it takes; empty: all.
    pub workflows: Vec<String>,
    /// Attempts before the outcome is a failure (`max_attempts`, default 5).
    pub max_attempts: u32,
    /// Time for one attempt (`timeout`, default 10 seconds).
    pub timeout: Duration,
}

/// A publisher's kind and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum PublisherKind {
    /// `kind: folder`: a Markdown file with JSON front matter per deliverable.
    Folder {
        /// The folder (`path`, relative to the studio file's folder).
        path: PathBuf,
    },
    /// `kind: webhook`: an HMAC-signed POST of the deliverable as JSON.
    Webhook {
        /// The address (`url`, http or https).
        url: String,
        /// The environment variable holding the HMAC key (`secret_env`).
        secret_env: String,
    },
    /// `kind: slack`: `chat.postMessage` to a channel.
    Slack {
        /// The channel (`channel`: a name such as `#content` or an id).
        channel: String,
        /// The environment variable holding the bot token (`token_env`,
        /// default `server.feedback.slack_bot_token_env`).
        token_env: String,
        /// Slack's Web API base (`api_base`, default
        /// `server.feedback.slack_api_base`).
        api_base: String,
    },
}

impl PublisherKind {
    /// `folder`, `webhook` or `slack`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PublisherKind::Folder { .. } => "folder",
            PublisherKind::Webhook { .. } => "webhook",
            PublisherKind::Slack { .. } => "slack",
        }
    }
}

/// Slack defaults for publishers without their own.
pub(super) struct SlackDefaults<'a> {
    pub token_env: &'a str,
    pub api_base: &'a str,
}

/// Reads `workflows.<name>.deliverables` and `publishers`.
pub(super) fn publishing_section(
    w: &mut Walker<'_>,
    root: &Map<String, Value>,
    workflows: &IndexMap<String, Workflow>,
    base_dir: &Path,
    slack: SlackDefaults<'_>,
) -> Publishing {
    let mut out = Publishing::default();
    if let Some(Value::Object(wfs)) = root.get("workflows") {
        for (name, v) in wfs {
            let Some(Value::Object(wf)) = Some(v) else {
                continue;
            };
            let p = child(&child("workflows", name), "deliverables");
            let steps = w.strings(wf, "deliverables", &child("workflows", name), false);
            if steps.len() > MAX_DELIVERABLE_STEPS {
                w.error(
                    &p,
                    format!("at most {MAX_DELIVERABLE_STEPS} deliverable steps per workflow"),
                );
            }
            let mut kept: Vec<String> = Vec::new();
            for (i, s) in steps.into_iter().enumerate() {
                let known = workflows
                    .get(name)
                    .map(|wf| wf.steps.iter().any(|st| st.id == s));
                match known {
                    Some(false) => {
                        let ids: Vec<&str> = workflows
                            .get(name)
                            .map(|wf| wf.steps.iter().map(|st| st.id.as_str()).collect())
                            .unwrap_or_default();
                        w.error(
                            &item(&p, i),
                            format!(
                                "unknown step {s:?}; the workflow's steps are: {}",
                                ids.join(", ")
                            ),
                        );
                    }
                    _ if kept.contains(&s) => {
                        w.warning(&item(&p, i), format!("step {s:?} is named twice"))
                    }
                    _ => kept.push(s),
                }
            }
            if !kept.is_empty() {
                out.deliverables.insert(name.clone(), kept);
            }
        }
    }
    let Some(pubs) = w.map(root.get("publishers"), "publishers") else {
        return out;
    };
    if pubs.len() > MAX_PUBLISHERS {
        w.error(
            "publishers",
            format!("at most {MAX_PUBLISHERS} publishers, found {}", pubs.len()),
        );
    }
    for (name, v) in pubs.iter().take(MAX_PUBLISHERS) {
        let p = child("publishers", name);
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            w.error(
                &p,
                "a publisher's name is 1 to 64 letters, digits, `-` or `_`",
            );
            continue;
        }
        if let Some(def) = publisher(w, v, &p, name, &out, workflows, base_dir, &slack) {
            out.publishers.insert(name.clone(), def);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn publisher(
    w: &mut Walker<'_>,
    v: &Value,
    p: &str,
    name: &str,
    publishing: &Publishing,
    workflows: &IndexMap<String, Workflow>,
    base_dir: &Path,
    slack: &SlackDefaults<'_>,
) -> Option<PublisherDef> {
    let m = w.map(Some(v), p)?;
    const COMMON: [&str; 4] = ["kind", "workflows", "max_attempts", "timeout"];
    let kind = w.string(m, "kind", p)?;
    let extra: &[&str] = match kind.as_str() {
        "folder" => &["path"],
        "webhook" => &["url", "secret_env"],
        "slack" => &["channel", "token_env", "api_base"],
        other => {
            w.error(
                &child(p, "kind"),
                format!("unknown publisher kind {other:?}; expected folder, webhook or slack"),
            );
            return None;
        }
    };
    let allowed: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
    w.known_keys(m, p, &allowed);
    let kind = match kind.as_str() {
        "folder" => PublisherKind::Folder {
            path: base_dir
                .join(w.string(m, "path", p)?)
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect(),
        },
        "webhook" => {
            let url = w.string(m, "url", p)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                w.error(&child(p, "url"), "must be an http:// or https:// address");
            }
            let secret_env = w.string(m, "secret_env", p)?;
            env_present(w, &child(p, "secret_env"), &secret_env, "HMAC key");
            PublisherKind::Webhook { url, secret_env }
        }
        _ => {
            let channel = w.string(m, "channel", p)?;
            let token_env = w
                .opt_string(m, "token_env", p)
                .unwrap_or_else(|| slack.token_env.to_string());
            env_present(w, &child(p, "token_env"), &token_env, "Slack bot token");
            let api_base = w
                .opt_string(m, "api_base", p)
                .unwrap_or_else(|| slack.api_base.to_string())
                .trim_end_matches('/')
                .to_string();
            PublisherKind::Slack {
                channel,
                token_env,
                api_base,
            }
        }
    };
    let wp = child(p, "workflows");
    let names = w.strings(m, "workflows", p, false);
    for (i, wf) in names.iter().enumerate() {
        if !workflows.contains_key(wf) {
            w.error(
                &item(&wp, i),
                format!("unknown workflow {wf:?}: define it under `workflows`"),
            );
        } else if publishing.steps_of(wf).is_empty() {
            w.warning(
                &item(&wp, i),
                format!("workflow {wf:?} names no `deliverables`, so nothing of it is published"),
            );
        }
    }
    let max_attempts = w.count(m, "max_attempts", p, 5);
    if max_attempts == 0 || max_attempts > 100 {
        w.error(&child(p, "max_attempts"), "must be from 1 to 100");
    }
    let timeout = w.duration(m, "timeout", p, Duration::from_secs(10));
    if timeout.is_zero() || timeout > Duration::from_secs(300) {
        w.error(
            &child(p, "timeout"),
            "must be more than zero and at most 5 minutes",
        );
    }
    Some(PublisherDef {
        name: name.to_string(),
        kind,
        workflows: names,
        max_attempts: u32::try_from(max_attempts.clamp(1, 100)).unwrap_or(5),
        timeout,
    })
}

/// Warns when the variable `var` is unset in this environment.
fn env_present(w: &mut Walker<'_>, p: &str, var: &str, what: &str) {
    if std::env::var_os(var).is_none_or(|v| v.is_empty()) {
        w.warning(
            p,
            format!("the {what} variable {var} is not set here; this publisher fails until it is"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Checked, Severity, check_with_env};
    use super::*;

    fn check(publishers: &str, deliverables: &str) -> (tempfile::TempDir, Checked) {
        let dir = tempfile::tempdir().expect("tempdir");
        let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
        let text = format!(
            r#"agents:
  paths: ["{}"]
workflows:
  daily:
    deliverables: {deliverables}
    steps:
      - id: research
        role: trend-researcher
        task: "Research."
      - id: draft
        role: content-creator
        task: "Draft."
  weekly:
    steps:
      - id: scan
        role: trend-researcher
        task: "Scan."
publishers:
{publishers}
"#,
            agents.display()
        );
        let file = dir.path().join("concierto.yaml");
        std::fs::write(&file, text).expect("write");
        let checked = check_with_env(&file, Vec::new());
        (dir, checked)
    }

    fn problems(c: &Checked, severity: Severity) -> Vec<String> {
        c.problems
            .iter()
            .filter(|p| p.severity == severity)
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    #[test]
    fn deliverables_and_publishers_parse_with_their_defaults() {
        let (dir, c) = check(
            r##"  drafts: {kind: folder, path: ./out}
  cms: {kind: webhook, url: "https://cms.example/hook", secret_env: CONCIERTO_TEST_UNSET_KEY, max_attempts: 8, timeout: "3 seconds"}
  team: {kind: slack, channel: "#content", workflows: [daily]}"##,
            "[draft]",
        );
        let s = c
            .studio
            .as_ref()
            .unwrap_or_else(|| panic!("{:?}", c.problems));
        let p = &s.publishing;
        assert_eq!(p.steps_of("daily"), ["draft".to_string()]);
        assert!(p.steps_of("weekly").is_empty());
        assert_eq!(
            p.publishers["drafts"].kind,
            PublisherKind::Folder {
                path: dir.path().join("out")
            }
        );
        assert_eq!(p.publishers["drafts"].max_attempts, 5);
        assert_eq!(p.publishers["cms"].max_attempts, 8);
        assert_eq!(p.publishers["cms"].timeout, Duration::from_secs(3));
        assert_eq!(
            p.publishers["team"].kind,
            PublisherKind::Slack {
                channel: "#content".into(),
                token_env: "SLACK_BOT_TOKEN".into(),
                api_base: "https://slack.com/api".into(),
            }
        );
        let names: Vec<&str> = p
            .publishers_for("weekly")
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names, vec!["drafts", "cms"]);
        // Missing variables are warnings.
        let warnings = problems(&c, Severity::Warning);
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("publishers.cms.secret_env")
                    && w.contains("CONCIERTO_TEST_UNSET_KEY")),
            "{warnings:?}"
        );
    }

    #[test]
    fn unknown_steps_workflows_kinds_and_keys_are_errors() {
        let (_d, c) = check(
            r#"  a: {kind: ftp, path: x}
  b: {kind: folder, path: x, url: "http://x"}
  c: {kind: webhook, url: "ftp://x", secret_env: K}
  d: {kind: folder, path: x, workflows: [nope]}
  e: {kind: folder, path: x, max_attempts: 0}"#,
            "[draft, publish]",
        );
        assert!(c.studio.is_none());
        let errors = problems(&c, Severity::Error);
        let has = |k: &str, m: &str| {
            assert!(
                errors.iter().any(|e| e.starts_with(k) && e.contains(m)),
                "{k} / {m} in {errors:?}"
            )
        };
        has(
            "workflows.daily.deliverables[1]",
            "unknown step \"publish\"",
        );
        has("publishers.a.kind", "unknown publisher kind \"ftp\"");
        has("publishers.b.url", "unknown key `url`");
        has("publishers.c.url", "http:// or https://");
        has("publishers.d.workflows[0]", "unknown workflow \"nope\"");
        has("publishers.e.max_attempts", "from 1 to 100");
    }
}
