//! `concierto validate --explain`: for every key of the seed's four blocks
//! (`triggers`, `feedback_loops`, `content_sources`, `progress_metrics`) as
//! written in a studio file, one line saying what it does at run time.
//!
//! The keys are walked in the file as written (list indexes dropped from the
//! printed path: `triggers.scheduled.daily_content_generation.time`); each is
//! explained from the loaded [`Studio`], so what is printed is what the
//! services will do (next fire times are computed from `now`).

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::model::*;
use super::problem::{Problem, Problems};
use crate::grammar::{CycleTime, Schedule, format_duration};

/// The seed's four blocks.
pub const SEED_BLOCKS: [&str; 4] = [
    "triggers",
    "feedback_loops",
    "content_sources",
    "progress_metrics",
];

/// What an unexplained key says; [`is_placeholder`] finds it.
pub const NOT_EXPLAINED: &str = "NOT EXPLAINED";

/// One key and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The key's path, list indexes dropped
    /// (`triggers.scheduled.daily_content_generation.time`).
    pub key: String,
    /// Its value as written, shortened (`"09:00"`, `[a, b]`); empty for a map
    /// or list of entries.
    pub value: String,
    /// What it does at run time.
    pub effect: String,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.key, self.effect)
        } else {
            write!(f, "{} {}: {}", self.key, self.value, self.effect)
        }
    }
}

/// True when `effect` says nothing (empty or [`NOT_EXPLAINED`]).
pub fn is_placeholder(effect: &str) -> bool {
    effect.trim().is_empty() || effect.contains(NOT_EXPLAINED)
}

/// Loads `path` (without environment overrides) and explains its seed keys;
/// fails with every problem when the studio has errors.
pub fn explain_file(path: &Path, now: DateTime<Utc>) -> Result<Vec<Explanation>, Problems> {
    let checked = super::check_with_env(path, std::iter::empty());
    let studio = checked.studio.ok_or(Problems(checked.problems))?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem::error(
            path,
            None,
            "",
            format!("cannot read the studio file: {e}"),
        )])
    })?;
    let tree = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Yaml))
        .build()
        .and_then(|c| c.try_deserialize::<Value>())
        .map_err(|e| {
            Problems(vec![Problem::error(
                path,
                None,
                "",
                format!("cannot load: {e}"),
            )])
        })?;
    Ok(explain(&studio, &tree, now))
}

/// Explains every key of the seed blocks of `tree` (the file as written)
/// with what `studio` (the same file, loaded) does with it.
pub fn explain(studio: &Studio, tree: &Value, now: DateTime<Utc>) -> Vec<Explanation> {
    let mut out = Vec::new();
    let x = Explainer { s: studio, now };
    for block in SEED_BLOCKS {
        if let Some(v) = tree.get(block) {
            walk(&x, &[block.to_string()], v, &mut out);
        }
    }
    out
}

fn short(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => format!(
            "[{}]",
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(_) | Value::Array(_) => String::new(),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn is_leaf(v: &Value) -> bool {
    match v {
        Value::Object(_) => false,
        Value::Array(a) => a.iter().all(|x| !x.is_object() && !x.is_array()),
        _ => true,
    }
}

fn walk(x: &Explainer<'_>, path: &[String], v: &Value, out: &mut Vec<Explanation>) {
    out.push(Explanation {
        key: path.join("."),
        value: short(v),
        effect: x.effect(path),
    });
    if is_leaf(v) {
        return;
    }
    let children: Vec<(&String, &Value)> = match v {
        Value::Object(m) => m.iter().collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_object())
            .flat_map(|m| m.iter())
            .collect(),
        _ => Vec::new(),
    };
    for (k, cv) in children {
        let mut p = path.to_vec();
        p.push(k.clone());
        walk(x, &p, cv, out);
    }
}

struct Explainer<'a> {
    s: &'a Studio,
    now: DateTime<Utc>,
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

impl Explainer<'_> {
    fn effect(&self, p: &[String]) -> String {
        let segs: Vec<&str> = p.iter().map(String::as_str).collect();
        let text = match segs.as_slice() {
            ["triggers"] => Some(format!(
                "the scheduler's triggers: {} in all (scheduled and event-based, demo triggers included); each fire starts one run of its workflow",
                self.s.triggers.len()
            )),
            ["triggers", "scheduled"] => Some(
                "triggers fired by the clock (time, cron or interval) in their time zone; a fire missed while down follows `misfire` (fire once by default)".into(),
            ),
            ["triggers", "event_based"] => Some(
                "triggers fired by events: new items of a content source (`source`) or a metric sample crossing a threshold (`metric`)".into(),
            ),
            ["triggers", _, name, rest @ ..] => self.trigger(name, rest),
            ["feedback_loops"] => Some(
                "how work is reviewed: by agents (agent_to_agent), by people at quality gates (agent_to_human), and how people's feedback reaches agents (human_to_agent)".into(),
            ),
            ["feedback_loops", "agent_to_agent"] => Some(format!(
                "review loops: {} ({})",
                self.s.feedback_loops.agent_to_agent.len(),
                self.s
                    .feedback_loops
                    .agent_to_agent
                    .iter()
                    .map(|l| l.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ["feedback_loops", "agent_to_agent", name, rest @ ..] => self.review_loop(name, rest),
            ["feedback_loops", "agent_to_human"] => Some(
                "human decisions: a step whose labels match a gate's threshold waits for the gate's reviewers".into(),
            ),
            ["feedback_loops", "agent_to_human", "quality_gates"] => Some(format!(
                "quality gates: {}",
                self.s
                    .feedback_loops
                    .quality_gates
                    .iter()
                    .map(|g| format!("{} (label {})", g.name, g.threshold))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ["feedback_loops", "agent_to_human", "quality_gates", name, rest @ ..] => {
                self.gate(name, rest)
            }
            ["feedback_loops", "human_to_agent"] => Some(
                "how feedback from people is taken in and routed to specialist roles (the feedback service and the feedback router)".into(),
            ),
            ["feedback_loops", "human_to_agent", name, rest @ ..] => self.capture(name, rest),
            ["content_sources"] => Some(format!(
                "the ingest service's sources: {} (each read on its own refresh into the content library, new and changed items announced on content.ingested)",
                self.s.content_sources.len()
            )),
            ["content_sources", "curated_databases"] => Some(
                "folders of the studio's own assets, indexed into the content library".into(),
            ),
            ["content_sources", "external_inspiration"] => Some(
                "feeds, pages and X accounts read for inspiration; their new items fire `source:` triggers".into(),
            ),
            ["content_sources", "training_data"] => Some(
                "folders the learners read: each source's learner output goes to its `learner` role as standing context".into(),
            ),
            ["content_sources", "external_inspiration", "twitter_accounts"] => Some(
                "X accounts, one source each (matched by `source: [twitter]` triggers)".into(),
            ),
            ["content_sources", _, rest @ ..] => {
                // The source's name is the first segment that names one.
                rest.iter()
                    .position(|n| self.s.content_sources.iter().any(|c| c.name == *n))
                    .and_then(|at| self.source(rest[at], &rest[at + 1..]))
            }
            ["progress_metrics"] => Some(format!(
                "the tracker's metrics: {}; each has a daily (or its improvement period's) rollup judged against its goal, a periodic report task for its tracker, and a watch of its off-target predicate",
                self.s.progress_metrics.len()
            )),
            ["progress_metrics", group] => Some(format!(
                "metric group {group} (shown together in `metrics ls` and the dashboard)"
            )),
            ["progress_metrics", _, name, rest @ ..] => self.metric(name, rest),
            _ => None,
        };
        text.unwrap_or_else(|| NOT_EXPLAINED.to_string())
    }

    fn next_fire(&self, t: &Trigger) -> Option<String> {
        match &t.kind {
            TriggerKind::Scheduled {
                when: When::Schedule(s),
                timezone,
                ..
            } => s.next_after(&self.now.with_timezone(timezone)).map(|n| {
                n.with_timezone(&Utc)
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            }),
            TriggerKind::Scheduled {
                when: When::Interval(d),
                ..
            } => chrono::Duration::from_std(*d)
                .ok()
                .map(|d| (self.now + d).format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            TriggerKind::Event(_) => None,
        }
    }

    fn trigger(&self, name: &str, rest: &[&str]) -> Option<String> {
        let t = self.s.triggers.iter().find(|t| t.name == name)?;
        let wf = self.s.workflows.get(&t.workflow);
        let roles: Vec<String> = wf
            .map(|w| w.steps.iter().map(|s| s.role.clone()).collect())
            .unwrap_or_default();
        let tz = match &t.kind {
            TriggerKind::Scheduled { timezone, .. } => timezone.to_string(),
            TriggerKind::Event(_) => String::new(),
        };
        let next = self
            .next_fire(t)
            .map(|n| format!(" (next: {n})"))
            .unwrap_or_default();
        Some(match rest {
            [] => format!(
                "trigger {name}: each fire starts a run of workflow {} (run id {name}@<fire time>){next}",
                t.workflow
            ),
            ["time"] | ["cron"] => match &t.kind {
                TriggerKind::Scheduled {
                    when: When::Schedule(s),
                    ..
                } => format!("{} {tz}{next}", describe_schedule(s)),
                _ => return None,
            },
            ["interval"] => match &t.kind {
                TriggerKind::Scheduled {
                    when: When::Interval(d),
                    ..
                } => format!(
                    "fires every {} counted from the scheduler's start{next}",
                    format_duration(*d)
                ),
                _ => return None,
            },
            ["timezone"] => format!("its schedule is read in {tz} (daylight saving followed)"),
            ["misfire"] => match &t.kind {
                TriggerKind::Scheduled { misfire, .. } => match misfire {
                    Misfire::Skip => "fires missed while the scheduler was down are skipped and counted as missed".into(),
                    Misfire::FireOnce => "fires missed while the scheduler was down are made up by one run".into(),
                    Misfire::FireAll(n) => format!("fires missed while the scheduler was down are all made up, at most {n}"),
                },
                _ => return None,
            },
            ["agents"] => super::trigger_agents::explain(self.s, t),
            ["workflow"] => format!(
                "each fire runs workflow {}: steps by {} in order of their inputs",
                t.workflow,
                list(&roles)
            ),
            ["priority"] => format!(
                "its runs are queued at priority {:?} instead of the workflow's",
                t.priority.unwrap_or(Priority::Normal)
            ),
            ["source"] => match &t.kind {
                TriggerKind::Event(EventFilter::NewContent { sources }) => {
                    let matched: Vec<String> = self
                        .s
                        .content_sources
                        .iter()
                        .filter(|c| {
                            sources.iter().any(|s| {
                                *s == c.name
                                    || (c.kind == SourceKind::TwitterStream
                                        && (s == "twitter" || s == "x"))
                            })
                        })
                        .map(|c| c.name.clone())
                        .collect();
                    format!(
                        "fires when the ingest service announces a new or changed item (content.ingested) of {}; names without a configured source ({}) never fire",
                        list(&matched),
                        list(
                            &sources
                                .iter()
                                .filter(|s| {
                                    !self.s.content_sources.iter().any(|c| {
                                        c.name == **s
                                            || (c.kind == SourceKind::TwitterStream
                                                && (*s == "twitter" || *s == "x"))
                                    })
                                })
                                .cloned()
                                .collect::<Vec<_>>()
                        )
                    )
                }
                _ => return None,
            },
            ["metric"] => match &t.kind {
                TriggerKind::Event(EventFilter::Threshold(p)) => format!(
                    "fires when `{p}` starts to hold on a sample of that metric (event.metric.*, from the tracker and ingested analytics); once per crossing, not while it stays true"
                ),
                _ => return None,
            },
            ["batch"] => match t.flood.batch {
                Some(d) => format!(
                    "flood control: the items of each {} window (aligned on the epoch) make one run, run id {name}@<window start>, every item in its params",
                    format_duration(d)
                ),
                None => return None,
            },
            ["max_runs_per_day"] => match t.flood.max_runs_per_day {
                Some(n) => format!(
                    "at most {n} runs per UTC day; later fires that day are dropped and counted (triggers ls: dropped)"
                ),
                None => return None,
            },
            _ => return None,
        })
    }

    fn review_loop(&self, name: &str, rest: &[&str]) -> Option<String> {
        let l = self
            .s
            .feedback_loops
            .agent_to_agent
            .iter()
            .find(|l| l.name == name)?;
        let steps: Vec<String> = self
            .s
            .workflows
            .values()
            .flat_map(|w| {
                w.steps
                    .iter()
                    .filter(|s| l.producers.contains(&s.role) || s.review.as_deref() == Some(name))
                    .map(move |s| format!("{}.{}", w.name, s.id))
            })
            .collect();
        let pass = l
            .pass_mark
            .map(|m| format!("a score of at least {m}"))
            .unwrap_or_else(|| "an approving verdict".into());
        Some(match rest {
            [] => format!(
                "review loop {name}: output of its producers is reviewed before the run moves on (steps: {})",
                list(&steps)
            ),
            ["producer"] => format!(
                "output of steps done by {} is reviewed by this loop (steps naming `review: {name}` too)",
                list(&l.producers)
            ),
            ["reviewer"] => format!(
                "{} review each output in turn; each must give {pass}, else the output goes back to the producer with the notes",
                list(&l.reviewers)
            ),
            ["cycle_time"] => match l.cycle_time {
                CycleTime::Immediate => {
                    "reviews run as soon as the output exists, inside the run".into()
                }
                CycleTime::Every(d) => format!(
                    "outputs are collected across runs and reviewed together once every {}",
                    format_duration(d)
                ),
            },
            ["max_rounds"] => format!(
                "at most {} review rounds; then {}",
                l.max_rounds,
                exhausted(l.on_exhausted)
            ),
            ["pass_mark"] => format!("a review passes with {pass}"),
            ["on_exhausted"] => format!("after the last round: {}", exhausted(l.on_exhausted)),
            _ => return None,
        })
    }

    fn gate(&self, name: &str, rest: &[&str]) -> Option<String> {
        let g = self
            .s
            .feedback_loops
            .quality_gates
            .iter()
            .find(|g| g.name == name)?;
        let steps: Vec<String> = self
            .s
            .workflows
            .values()
            .flat_map(|w| {
                w.steps
                    .iter()
                    .filter(|s| s.labels.contains(&g.threshold))
                    .map(move |s| format!("{}.{}", w.name, s.id))
            })
            .collect();
        let breach = match g.on_breach {
            BreachAction::Hold => "the step keeps waiting and the escalation contacts are told",
            BreachAction::Approve => "the gate approves itself",
            BreachAction::Reject => "the gate rejects the output",
        };
        Some(match rest {
            [] => format!(
                "quality gate {name}: steps labelled {} wait for a person's decision (steps: {})",
                g.threshold,
                list(&steps)
            ),
            ["threshold"] if g.threshold == super::changes::CHANGE_LABEL => format!(
                "any step whose output carries a change block ({} changes at most: trigger \
                 schedules and thresholds, loop pass marks, gate SLAs, metric targets) opens this \
                 gate; approving writes the changes into the studio file (validated first) and \
                 every service takes them without a restart",
                super::changes::MAX_CHANGES
            ),
            ["threshold"] => format!(
                "steps labelled {} ({}) open this gate when they finish; the run waits for the decision",
                g.threshold,
                list(&steps)
            ),
            ["reviewers"] => format!(
                "{} are asked to decide (gate.requested, Slack or the dashboard); any one decides",
                list(&g.reviewers)
            ),
            ["sla"] => format!(
                "a decision is due within {}; reminders {} before; past it {breach}",
                format_duration(g.sla),
                g.remind_before
                    .iter()
                    .map(|d| format_duration(*d))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            ["remind_before"] => "when reminders go to the reviewers, before the SLA ends".into(),
            ["on_breach"] => format!("past the SLA: {breach}"),
            ["escalate_to"] => format!("told when the SLA is breached: {}", list(&g.escalate_to)),
            ["batch"] => super::gate_batch::explain(g)?,
            _ => return None,
        })
    }

    fn capture(&self, name: &str, rest: &[&str]) -> Option<String> {
        let c = self
            .s
            .feedback_loops
            .human_to_agent
            .iter()
            .find(|c| c.name == name)?;
        let off: Vec<String> = ["slack", "email", "web_form"]
            .iter()
            .filter(|ch| !c.channels.iter().any(|x| x == *ch))
            .map(|s| s.to_string())
            .collect();
        let table = super::keys::routing_table(self.s);
        let routes = table
            .iter()
            .map(|(k, v)| format!("{k} → {}", v.join(" + ")))
            .collect::<Vec<_>>()
            .join("; ");
        Some(match rest {
            [] => format!(
                "feedback capture {name}: feedback from its channels is stored, categorised by {} and routed to specialists, whose reply goes back on the channel it came from",
                c.processor
            ),
            ["channels"] => format!(
                "the feedback service takes feedback from {}; {}; the admin API (api) is always open",
                list(&c.channels),
                if off.is_empty() {
                    "every channel is on".to_string()
                } else {
                    format!("{} answer 404 with a sentence naming this key", list(&off))
                }
            ),
            ["processor"] => format!(
                "{} categorises each piece of feedback (step `categorise` of run feedback:<id>) as {}",
                c.processor,
                table.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            ["action"] => format!(
                "route_to_specialists: each category's roles get a `respond-<role>` step; the first response is the reply sent to the person (routing: {routes})"
            ),
            ["routing"] => format!("category → roles: {routes}"),
            ["routing", category] => format!(
                "feedback categorised {category} goes to {}",
                list(table.get(*category).map(Vec::as_slice).unwrap_or(&[]))
            ),
            _ => return None,
        })
    }

    fn source(&self, name: &str, rest: &[&str]) -> Option<String> {
        let c = self.s.content_sources.iter().find(|c| c.name == name)?;
        let refresh = match c.refresh {
            crate::config::Refresh::OnUpdate => "whenever its files change (watched)".to_string(),
            crate::config::Refresh::Continuous => {
                "continuously (watched and re-read as items arrive)".to_string()
            }
            crate::config::Refresh::Every(d) => format!("every {}", format_duration(d)),
        };
        let training = c.kind == SourceKind::TrainingData;
        let extractors = if c.extract.is_empty() {
            "every default extractor (palettes, typography, concepts, trends)".to_string()
        } else {
            c.extract
                .iter()
                .map(|x| {
                    let what = super::keys::KNOWN_EXTRACTORS
                        .iter()
                        .find(|(k, _)| k == x)
                        .map(|(_, w)| *w)
                        .unwrap_or("unknown");
                    format!("{x} ({what})")
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        Some(match rest {
            [] => format!(
                "source {name} ({}): read {refresh} into the content library under source {name}",
                c.kind.as_str()
            ),
            ["type"] if training => format!(
                "{}: its files are ingested as training data",
                c.kind.as_str()
            ),
            ["type"] => format!(
                "read as {}: {}",
                c.kind.as_str(),
                match c.kind {
                    SourceKind::ImageDatabase => "every image file (palette extracted, blob kept)",
                    SourceKind::ComponentLibrary =>
                        "every design-system file (HTML, CSS, tokens, images)",
                    SourceKind::WebScraper =>
                        "the feed or page at its url, then each linked item page",
                    SourceKind::TwitterStream => "the account's new posts through the X API",
                    SourceKind::TrainingData => "training data",
                }
            ),
            ["path"] | ["source"] => format!(
                "the folder read (relative to the studio file): {}",
                c.location
            ),
            ["url"] => format!(
                "fetched {refresh}, within robots.txt and the network guard: {}",
                c.location
            ),
            ["handle"] => format!("the X account read {refresh}: {}", c.location),
            ["indexer"] | ["processor"] => format!(
                "{} is told of each new or changed item of this source (its items fire the source's triggers, whose workflows give it work){}",
                c.role,
                if super::trends::selects_design_trends(c) {
                    format!(
                        "; as this source selects design_trends, it also receives the weekly trend report (context `trend-report`), read from {}",
                        list(
                            &super::trends::trend_sources(self.s)
                                .iter()
                                .map(|t| t.name.clone())
                                .collect::<Vec<_>>()
                        )
                    )
                } else if training {
                    String::new()
                } else {
                    "; this source does not select design_trends, so it gets no trend report"
                        .to_string()
                }
            ),
            ["learner"] if training => {
                let what = if super::keys::is_feedback_source(c) {
                    "the processed feedback the feedback router exports into this folder (JSON files), summarised as context `feedback-insights`"
                } else {
                    "the insights of this folder's high-performing campaigns, as context `campaign-insights`"
                };
                format!(
                    "{} receives {what} on context.{} (standing context handed to every task of the role)",
                    c.role, c.role
                )
            }
            ["training_frequency"] => format!("the learner recomputes {refresh}"),
            ["refresh"] | ["frequency"] => format!("the source is read {refresh}"),
            ["extractor"] | ["extract"] => {
                let trends = if super::trends::selects_design_trends(c) {
                    format!(
                        "; the trend report goes to {}",
                        list(&super::trends::trend_roles(self.s))
                    )
                } else {
                    "; without design_trends its items stay out of the trend report, and its processor does not receive it".to_string()
                };
                format!("only these extractors run on its items: {extractors}{trends}")
            }
            ["allow_hosts"] => format!(
                "besides its own host, pages and images may be fetched from {}",
                list(&c.allow_hosts)
            ),
            ["enabled"] => {
                if c.enabled {
                    "the source is read (`enabled: false` turns it off without removing it)"
                        .to_string()
                } else {
                    "the source is off: nothing is read or fetched until it says `enabled: true`"
                        .to_string()
                }
            }
            ["allow_private_networks"] => format!(
                "fetching from loopback and private addresses is {}",
                if c.allow_private_networks {
                    "allowed"
                } else {
                    "refused"
                }
            ),
            _ => return None,
        })
    }

    fn metric(&self, name: &str, rest: &[&str]) -> Option<String> {
        let m = self.s.progress_metrics.iter().find(|m| m.name == name)?;
        let (_, _, _, off) = super::targets::off_target_predicate(m);
        let period = super::reports::report_period(m);
        Some(match rest {
            [] => format!(
                "metric {name}: rolled up {period}, judged against {}; off target when `{off}`",
                m.goal_text
            ),
            ["target"] => format!(
                "on target while the value rolled up {period} meets {}; the tracker watches `{off}` (event.metric.{name} when it starts to hold)",
                m.goal_text
            ),
            ["improvement_target"] => format!(
                "on target while the value improves by {} against the previous period; the tracker watches `{off}`",
                m.goal_text
            ),
            ["type"] => format!(
                "{}: {}",
                m.kind.as_deref().unwrap_or("unspecified"),
                super::reports::type_meaning(m.kind.as_deref())
            ),
            ["tracker"] => format!(
                "{} gets a {period} report task (workflow metric-report:{name}) with the series since its last report",
                m.tracker
            ),
            ["on_off_target"] => "what happens when the metric falls off target".into(),
            ["on_off_target", "workflow"] => format!(
                "when `{off}` starts to hold, a run of {} starts (run id target:{name}@<crossed at>)",
                m.on_off_target
                    .as_ref()
                    .and_then(|t| t.workflow.clone())
                    .unwrap_or_default()
            ),
            ["on_off_target", "notify"] => format!(
                "when `{off}` starts to hold, {} are told (event.target.{name})",
                list(
                    m.on_off_target
                        .as_ref()
                        .map(|t| t.notify.as_slice())
                        .unwrap_or(&[])
                )
            ),
            _ => return None,
        })
    }
}

fn exhausted(e: Exhausted) -> &'static str {
    match e {
        Exhausted::Fail => "the step fails (the workflow's on_failure runs)",
        Exhausted::Escalate => "the output goes to a person at a gate",
    }
}

fn describe_schedule(s: &Schedule) -> String {
    match s {
        Schedule::Daily { time } => format!("fires daily at {}", time.format("%H:%M")),
        Schedule::Weekly { day, time } => {
            format!("fires every {day:?} at {}", time.format("%H:%M"))
        }
        Schedule::Cron { expr } => format!("fires on cron `{expr}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_key_of_the_example_studio_is_explained() {
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/concierto.yaml");
        let now = DateTime::parse_from_rfc3339("2026-12-07T07:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .expect("a date");
        let lines = explain_file(&file, now).expect("the example studio loads");
        let bad: Vec<String> = lines
            .iter()
            .filter(|l| is_placeholder(&l.effect))
            .map(|l| l.key.clone())
            .collect();
        assert!(bad.is_empty(), "keys without an explanation: {bad:?}");
        let keys: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
        // Every seed key, and the keys added beside them.
        for k in [
            "triggers.scheduled.daily_content_generation.time",
            "triggers.scheduled.daily_content_generation.agents",
            "triggers.scheduled.continuous_optimization.interval",
            "triggers.event_based.on_new_inspiration.source",
            "triggers.event_based.on_new_inspiration.batch",
            "triggers.event_based.on_new_inspiration.max_runs_per_day",
            "triggers.event_based.on_performance_threshold.metric",
            "feedback_loops.agent_to_agent.experimenter_to_optimizer.cycle_time",
            "feedback_loops.agent_to_human.quality_gates.brand_approval.sla",
            "feedback_loops.human_to_agent.feedback_capture.channels",
            "feedback_loops.human_to_agent.feedback_capture.action",
            "content_sources.external_inspiration.siteinspire.extractor",
            "content_sources.external_inspiration.twitter_accounts.FigsFromPlums.extract",
            "content_sources.training_data.user_feedback.learner",
            "progress_metrics.content_generation.daily_output.type",
            "progress_metrics.content_generation.daily_output.tracker",
            "progress_metrics.content_generation.daily_output.on_off_target.workflow",
            "progress_metrics.system_health.feedback_response_time.on_off_target.notify",
            "progress_metrics.learning_progress.success_rate.improvement_target",
        ] {
            assert!(keys.contains(&k), "{k} is not explained; keys: {keys:?}");
        }
        let line = |k: &str| {
            lines
                .iter()
                .find(|l| l.key == k)
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        // 09:00 Madrid on 7 December 2026 (CET, UTC+1) is 08:00 UTC.
        assert_eq!(
            line("triggers.scheduled.daily_content_generation.time"),
            "triggers.scheduled.daily_content_generation.time \"09:00\": fires daily at 09:00 Europe/Madrid (next: 2026-12-07T08:00:00Z)"
        );
        assert!(
            line("content_sources.training_data.user_feedback.learner")
                .contains("user-researcher receives the processed feedback"),
            "{}",
            line("content_sources.training_data.user_feedback.learner")
        );
        assert!(
            line("feedback_loops.human_to_agent.feedback_capture.action")
                .contains("brand → brand-guardian + creative-director")
        );
        assert!(
            line("progress_metrics.content_generation.daily_output.type")
                .contains("content_pieces: a count of content pieces")
        );
        // The lines follow the file's order of keys: the four blocks.
        assert_eq!(lines[0].key, "triggers");
    }
}
