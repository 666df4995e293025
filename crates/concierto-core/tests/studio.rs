//! The example studio and the problems a studio can have, through the public
//! loading API: `check`, `check_with_env`, `load`, `load_with_env`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveTime, Weekday};
use concierto_core::config::{
    Checked, ContentSource, EventFilter, Goal, MetricDef, Problem, Refresh, Severity, SourceKind,
    Studio, TriggerKind, When, check_with_env, load, load_with_env,
};
use concierto_core::grammar::{Comparison, CycleTime, Period, Quantity, Schedule};
use yaml_rust2::{Yaml, YamlLoader};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The user's seed document, kept in the repository as written.
const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/SEED.md");

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio")
}

fn example_file() -> PathBuf {
    example_dir().join("concierto.yaml")
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

/// Checks a studio file with no environment overrides.
fn check_file(file: &Path) -> Checked {
    check_with_env(file, no_env())
}

fn errors(checked: &Checked) -> Vec<&Problem> {
    checked
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .collect()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn strings(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The 1-based line of the only line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} should be on exactly one line");
    hits[0]
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the example studio (the file and its role files) in a temporary
/// folder, with `edit` applied to the file's text. Returns the folder, the
/// file and its text.
fn example_copy(edit: impl FnOnce(&str) -> String) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example_dir().join("agents"), &dir.path().join("agents"));
    let text = edit(&std::fs::read_to_string(example_file()).unwrap());
    let file = dir.path().join("concierto.yaml");
    std::fs::write(&file, &text).unwrap();
    (dir, file, text)
}

/// Writes a role file.
fn write_role(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn role_text(name: &str, tools: &str) -> String {
    format!("---\nname: {name}\ndescription: Does {name} work.\n{tools}---\nYou are {name}.\n")
}

/// A studio file with `text` in a temporary folder whose `agents/` holds `roles`
/// (relative path, file text).
fn studio_in_tempdir(text: &str, roles: &[(&str, String)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("agents")).unwrap();
    for (path, role) in roles {
        write_role(&dir.path().join("agents").join(path), role);
    }
    let file = dir.path().join("concierto.yaml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

fn load_example() -> (Studio, Checked) {
    let checked = check_file(&example_file());
    let studio = checked
        .studio
        .clone()
        .unwrap_or_else(|| panic!("the example studio has errors: {:#?}", checked.problems));
    (studio, checked)
}

fn source<'a>(studio: &'a Studio, name: &str) -> &'a ContentSource {
    studio
        .content_sources
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no content source {name}"))
}

fn metric<'a>(studio: &'a Studio, name: &str) -> &'a MetricDef {
    studio
        .progress_metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn example_studio_loads_with_20_roles_and_one_warning_for_instagram() {
    let (studio, checked) = load_example();
    assert!(errors(&checked).is_empty(), "{:#?}", checked.problems);

    assert_eq!(studio.roles.len(), 20, "{:?}", studio.roles.keys());
    for name in [
        "content-creator",
        "visual-storyteller",
        "brand-guardian",
        "trend-researcher",
        "competitive-strategist",
        "performance-benchmarker",
        "workflow-optimizer",
        "innovation-catalyst",
        "growth-hacker",
        "feedback-synthesizer",
        "studio-orchestrator",
        "support-responder",
        "test-results-analyzer",
    ] {
        assert!(studio.roles.contains_key(name), "role {name} is missing");
    }

    // Exactly one warning: instagram, which no content source produces.
    assert_eq!(checked.problems.len(), 1, "{:#?}", checked.problems);
    let w = &checked.problems[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(
        w.key,
        "triggers.event_based[0].on_new_inspiration.source[2]"
    );
    assert!(w.message.contains("\"instagram\""), "{}", w.message);
    let text = std::fs::read_to_string(example_file()).unwrap();
    assert_eq!(
        w.line,
        Some(line_of(
            &text,
            "source: [\"siteinspire\", \"twitter\", \"instagram\"]"
        ))
    );

    // `load` gives the same studio (warnings are only logged).
    let loaded = load(&example_file()).expect("load fails on the example studio");
    assert_eq!(loaded.roles.len(), 20);
    // The seed's five and the example's demo trigger.
    assert_eq!(loaded.triggers.len(), 6);
    assert_eq!(loaded.triggers[5].name, "studio_demo");
}

#[test]
fn example_studio_triggers_parse_to_their_schedules_interval_sources_and_predicate() {
    let (studio, _) = load_example();
    let madrid = chrono_tz::Europe::Madrid;
    assert_eq!(studio.studio.timezone, madrid);
    let names: Vec<&str> = studio.triggers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "daily_content_generation",
            "weekly_trend_analysis",
            "continuous_optimization",
            "on_new_inspiration",
            "on_performance_threshold",
            "studio_demo",
        ]
    );
    let t = &studio.triggers;

    match &t[0].kind {
        TriggerKind::Scheduled {
            when: When::Schedule(Schedule::Daily { time }),
            timezone,
            ..
        } => {
            assert_eq!(*time, NaiveTime::from_hms_opt(9, 0, 0).unwrap());
            assert_eq!(*timezone, madrid);
        }
        other => panic!("daily_content_generation is {other:?}"),
    }
    assert_eq!(
        strings(&t[0].agents),
        [
            "content-creator",
            "visual-storyteller",
            "brand-guardian",
            "trend-researcher"
        ]
    );
    assert_eq!(t[0].workflow, "daily-content-pipeline");

    match &t[1].kind {
        TriggerKind::Scheduled {
            when: When::Schedule(Schedule::Weekly { day, time }),
            timezone,
            ..
        } => {
            assert_eq!(*day, Weekday::Mon);
            assert_eq!(*time, NaiveTime::from_hms_opt(10, 0, 0).unwrap());
            assert_eq!(*timezone, madrid);
        }
        other => panic!("weekly_trend_analysis is {other:?}"),
    }
    assert_eq!(
        strings(&t[1].agents),
        [
            "trend-researcher",
            "competitive-strategist",
            "feedback-synthesizer",
            "user-researcher",
            "support-responder",
            "analytics-reporter"
        ]
    );
    assert_eq!(t[1].workflow, "market-intelligence");

    match &t[2].kind {
        TriggerKind::Scheduled {
            when: When::Interval(d),
            ..
        } => assert_eq!(*d, secs(6 * HOUR)),
        other => panic!("continuous_optimization is {other:?}"),
    }
    assert_eq!(
        strings(&t[2].agents),
        [
            "performance-benchmarker",
            "workflow-optimizer",
            "test-results-analyzer",
            "backend-architect",
            "studio-orchestrator"
        ]
    );
    assert_eq!(t[2].workflow, "system-improvement");

    match &t[3].kind {
        TriggerKind::Event(EventFilter::NewContent { sources }) => {
            assert_eq!(strings(sources), ["siteinspire", "twitter", "instagram"]);
        }
        other => panic!("on_new_inspiration is {other:?}"),
    }
    assert_eq!(
        strings(&t[3].agents),
        [
            "innovation-catalyst",
            "visual-storyteller",
            "ui-designer",
            "creative-director"
        ]
    );
    assert_eq!(t[3].workflow, "inspiration-to-concept");

    match &t[4].kind {
        TriggerKind::Event(EventFilter::Threshold(p)) => {
            assert_eq!(p.metric, "engagement_rate");
            assert_eq!(p.op, Comparison::Lt);
            assert_eq!(p.value, 0.05);
        }
        other => panic!("on_performance_threshold is {other:?}"),
    }
    assert_eq!(
        strings(&t[4].agents),
        ["growth-hacker", "content-creator", "experiment-tracker"]
    );
    assert_eq!(t[4].workflow, "content-optimization");
}

#[test]
fn example_studio_has_two_review_loops_two_quality_gates_and_feedback_capture() {
    let (studio, _) = load_example();
    let f = &studio.feedback_loops;

    assert_eq!(f.agent_to_agent.len(), 2);
    let l = &f.agent_to_agent[0];
    assert_eq!(l.name, "creator_to_reviewer");
    assert_eq!(strings(&l.producers), ["content-creator", "ui-designer"]);
    assert_eq!(
        strings(&l.reviewers),
        ["brand-guardian", "test-writer-fixer"]
    );
    assert_eq!(l.cycle_time, CycleTime::Immediate);
    let l = &f.agent_to_agent[1];
    assert_eq!(l.name, "experimenter_to_optimizer");
    assert_eq!(
        strings(&l.producers),
        ["growth-hacker", "experiment-tracker"]
    );
    assert_eq!(
        strings(&l.reviewers),
        ["analytics-reporter", "workflow-optimizer"]
    );
    assert_eq!(l.cycle_time, CycleTime::Every(secs(24 * HOUR)));

    assert_eq!(f.quality_gates.len(), 3);
    // Added beside the seed's gates: optimizer proposals become changes.
    let g = &f.quality_gates[2];
    assert_eq!(g.name, "studio_change");
    assert_eq!(g.threshold, concierto_core::config::changes::CHANGE_LABEL);
    assert_eq!(strings(&g.reviewers), ["creative_director"]);
    let g = &f.quality_gates[0];
    assert_eq!(g.name, "brand_approval");
    assert_eq!(g.threshold, "major_brand_changes");
    assert_eq!(strings(&g.reviewers), ["brand_manager"]);
    assert_eq!(g.sla, secs(4 * HOUR));
    let g = &f.quality_gates[1];
    assert_eq!(g.name, "creative_review");
    assert_eq!(g.threshold, "campaign_launch");
    assert_eq!(strings(&g.reviewers), ["creative_director"]);
    assert_eq!(g.sla, secs(24 * HOUR));

    assert_eq!(f.human_to_agent.len(), 1);
    let c = &f.human_to_agent[0];
    assert_eq!(c.name, "feedback_capture");
    assert_eq!(strings(&c.channels), ["slack", "email", "web_form"]);
    assert_eq!(c.processor, "feedback-synthesizer");
    assert_eq!(c.action, "route_to_specialists");
}

#[test]
fn example_studio_has_six_content_sources_including_nested_figs_from_plums() {
    let (studio, _) = load_example();
    let names: Vec<&str> = studio
        .content_sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "internal_assets",
            "design_patterns",
            "siteinspire",
            "FigsFromPlums",
            "successful_campaigns",
            "user_feedback",
        ]
    );

    let s = source(&studio, "internal_assets");
    assert_eq!(s.group, "curated_databases");
    assert_eq!(s.kind, SourceKind::ImageDatabase);
    // Relative to the studio file's folder, where the sample pictures are.
    assert_eq!(
        Path::new(&s.location),
        studio.base_dir.join("content/brand-assets/")
    );
    assert!(Path::new(&s.location).is_dir(), "{}", s.location);
    assert!(s.enabled);
    assert_eq!(s.role, "visual-storyteller");
    assert_eq!(s.refresh, Refresh::OnUpdate);

    let s = source(&studio, "design_patterns");
    assert_eq!(s.kind, SourceKind::ComponentLibrary);
    assert_eq!(
        Path::new(&s.location),
        studio.base_dir.join("content/design-system/")
    );
    assert_eq!(s.role, "ui-designer");
    assert_eq!(s.refresh, Refresh::Every(secs(DAY)));

    let s = source(&studio, "siteinspire");
    assert_eq!(s.group, "external_inspiration");
    assert_eq!(s.kind, SourceKind::WebScraper);
    assert_eq!(s.location, "https://siteinspire.com/feed");
    assert!(!s.enabled, "the example makes no request to the internet");
    assert_eq!(s.role, "innovation-catalyst");
    assert_eq!(s.refresh, Refresh::Every(secs(DAY)));
    assert_eq!(
        strings(&s.extract),
        ["design_trends", "color_palettes", "typography_patterns"]
    );

    let s = source(&studio, "FigsFromPlums");
    assert_eq!(s.group, "external_inspiration.twitter_accounts");
    assert_eq!(s.kind, SourceKind::TwitterStream);
    assert_eq!(s.location, "@FigsFromPlums");
    assert!(!s.enabled);
    assert_eq!(s.role, "trend-researcher");
    assert_eq!(
        strings(&s.extract),
        [
            "visual_concepts",
            "creative_techniques",
            "industry_insights"
        ]
    );

    let s = source(&studio, "successful_campaigns");
    assert_eq!(s.group, "training_data");
    assert_eq!(s.kind, SourceKind::TrainingData);
    assert_eq!(
        Path::new(&s.location),
        studio.base_dir.join("analytics/high-performing/")
    );
    assert_eq!(s.role, "growth-hacker");
    assert_eq!(s.refresh, Refresh::Every(secs(7 * DAY)));

    let s = source(&studio, "user_feedback");
    assert_eq!(
        Path::new(&s.location),
        studio.base_dir.join("feedback/processed/")
    );
    assert_eq!(s.role, "user-researcher");
    assert_eq!(s.refresh, Refresh::Continuous);
}

#[test]
fn example_studio_has_six_metrics_with_parsed_goals() {
    let (studio, _) = load_example();
    assert_eq!(studio.progress_metrics.len(), 6);

    let target = |name: &str| match metric(&studio, name).goal {
        Goal::Target(t) => (t.op, t.value),
        Goal::Improvement(i) => panic!("{name} is an improvement: {i:?}"),
    };
    let improvement = |name: &str| match metric(&studio, name).goal {
        Goal::Improvement(i) => (i.percent, i.period),
        Goal::Target(t) => panic!("{name} is a target: {t:?}"),
    };

    assert_eq!(
        target("daily_output"),
        (Comparison::Ge, Quantity::Number(10.0))
    );
    assert_eq!(
        target("quality_score"),
        (Comparison::Ge, Quantity::Number(0.85))
    );
    assert_eq!(
        target("agent_utilization"),
        (Comparison::Ge, Quantity::Number(0.7))
    );
    assert_eq!(
        target("feedback_response_time"),
        (Comparison::Lt, Quantity::Duration(secs(7200)))
    );
    assert_eq!(improvement("pattern_recognition"), (5.0, Period::Weekly));
    assert_eq!(improvement("success_rate"), (3.0, Period::Monthly));

    let m = metric(&studio, "daily_output");
    assert_eq!(m.group, "content_generation");
    assert_eq!(m.kind.as_deref(), Some("content_pieces"));
    assert_eq!(m.tracker, "analytics-reporter");
    let m = metric(&studio, "feedback_response_time");
    assert_eq!(m.group, "system_health");
    assert_eq!(m.goal_text, "< 2 hours");
    assert_eq!(m.tracker, "support-responder");
    let m = metric(&studio, "success_rate");
    assert_eq!(m.group, "learning_progress");
    assert_eq!(m.goal_text, "3% monthly");
    assert_eq!(m.tracker, "test-results-analyzer");
}

#[test]
fn example_studio_has_five_workflows_with_their_steps() {
    let (studio, _) = load_example();
    let expected: [(&str, &[(&str, &str)]); 5] = [
        (
            "daily-content-pipeline",
            &[
                ("research-context", "trend-researcher"),
                ("draft-content", "content-creator"),
                ("visual-brief", "visual-storyteller"),
                ("brand-check", "brand-guardian"),
            ],
        ),
        (
            "market-intelligence",
            &[
                ("trend-scan", "trend-researcher"),
                ("competitive-brief", "competitive-strategist"),
                ("feedback-digest", "feedback-synthesizer"),
                ("audience-insights", "user-researcher"),
                ("reply-templates", "support-responder"),
                ("weekly-report", "analytics-reporter"),
            ],
        ),
        (
            "system-improvement",
            &[
                ("benchmark", "performance-benchmarker"),
                ("review-outcomes", "test-results-analyzer"),
                ("pipeline-health", "backend-architect"),
                ("balance-capacity", "studio-orchestrator"),
                ("optimize", "workflow-optimizer"),
            ],
        ),
        (
            "inspiration-to-concept",
            &[
                ("extract-and-ideate", "innovation-catalyst"),
                ("visual-concept", "visual-storyteller"),
                ("ui-concept", "ui-designer"),
                ("creative-direction", "creative-director"),
            ],
        ),
        (
            "content-optimization",
            &[
                ("diagnose", "growth-hacker"),
                ("rewrite-content", "content-creator"),
                ("track-experiment", "experiment-tracker"),
            ],
        ),
    ];
    let names: Vec<&str> = studio.workflows.keys().map(String::as_str).collect();
    assert_eq!(names, expected.map(|(n, _)| n));
    for (name, steps) in expected {
        let wf = &studio.workflows[name];
        let got: Vec<(&str, &str)> = wf
            .steps
            .iter()
            .map(|s| (s.id.as_str(), s.role.as_str()))
            .collect();
        assert_eq!(got, steps, "steps of {name}");
        let on_failure = wf
            .on_failure
            .as_ref()
            .expect("every workflow has on_failure");
        assert_eq!(on_failure.role, "studio-orchestrator");
    }

    let daily = &studio.workflows["daily-content-pipeline"];
    let draft = &daily.steps[1];
    assert_eq!(strings(&draft.inputs), ["trigger", "research-context"]);
    assert_eq!(draft.timeout, secs(15 * 60));
    assert_eq!(draft.retries, 2);
    assert_eq!(draft.review.as_deref(), Some("creator_to_reviewer"));
    assert_eq!(
        strings(&daily.steps[3].inputs),
        ["draft-content", "visual-brief"]
    );
    let concept = &studio.workflows["inspiration-to-concept"].steps[1];
    assert_eq!(strings(&concept.labels), ["major_brand_changes"]);
    let optimization = &studio.workflows["content-optimization"];
    assert_eq!(
        optimization.priority,
        concierto_core::config::Priority::Urgent
    );
    assert_eq!(strings(&optimization.steps[1].labels), ["campaign_launch"]);
    // Loops attach by role: no step of the example names its loop.
    let review = |wf: &str, step: &str| {
        studio.workflows[wf]
            .steps
            .iter()
            .find(|s| s.id == step)
            .and_then(|s| s.review.clone())
    };
    assert_eq!(
        review("inspiration-to-concept", "ui-concept").as_deref(),
        Some("creator_to_reviewer")
    );
    assert_eq!(
        review("content-optimization", "diagnose").as_deref(),
        Some("experimenter_to_optimizer")
    );
    assert_eq!(
        review("content-optimization", "track-experiment").as_deref(),
        Some("experimenter_to_optimizer")
    );
    assert_eq!(review("daily-content-pipeline", "brand-check"), None);
}

/// The `yaml` fenced blocks of a Markdown text.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim() == "```yaml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

#[test]
fn example_studio_keeps_the_seed_blocks_unchanged() {
    const SEED_KEYS: [&str; 4] = [
        "triggers",
        "feedback_loops",
        "content_sources",
        "progress_metrics",
    ];
    let seed = std::fs::read_to_string(SEED).unwrap_or_else(|e| panic!("cannot read {SEED}: {e}"));
    let mut from_seed = Vec::new();
    for block in yaml_blocks(&seed) {
        let docs = YamlLoader::load_from_str(&block).expect("a seed block is valid YAML");
        let Some(Yaml::Hash(map)) = docs.into_iter().next() else {
            panic!("a seed block is not a map: {block}");
        };
        from_seed.extend(map);
    }
    let seed_keys: Vec<&str> = from_seed.iter().filter_map(|(k, _)| k.as_str()).collect();
    assert_eq!(seed_keys, SEED_KEYS);

    let example = std::fs::read_to_string(example_file()).unwrap();
    let docs = YamlLoader::load_from_str(&example).unwrap();
    let Some(Yaml::Hash(example)) = docs.into_iter().next() else {
        panic!("the example studio is not a map");
    };
    for (key, seed_value) in &from_seed {
        let example_value = example
            .get(key)
            .unwrap_or_else(|| panic!("the example has no {key:?} block"));
        // The seed's keys as written; keys the seed does not have may be added
        // beside them (`on_off_target`, `batch`, `max_runs_per_day`).
        assert!(
            seed_within(seed_value, example_value),
            "block {key:?} differs from the seed"
        );
    }
}

/// Whether every key and value of `seed` is in `example` as written (maps may
/// have more keys; lists the same items in the same order, except that a
/// trigger's `agents` may go on after the seed's roles).
fn seed_within(seed: &Yaml, example: &Yaml) -> bool {
    match (seed, example) {
        (Yaml::Hash(s), Yaml::Hash(e)) => s.iter().all(|(k, v)| {
            e.get(k).is_some_and(|ev| match (k.as_str(), v, ev) {
                (Some("agents"), Yaml::Array(sa), Yaml::Array(ea)) => {
                    ea.len() >= sa.len() && sa.iter().zip(ea).all(|(a, b)| a == b)
                }
                // Gates may be added after the seed's (`studio_change`).
                (Some("quality_gates"), Yaml::Array(sa), Yaml::Array(ea)) => {
                    ea.len() >= sa.len() && sa.iter().zip(ea).all(|(a, b)| seed_within(a, b))
                }
                // A source's folder may be the seed's absolute path written
                // relative to the studio file, where the sample content is.
                (Some("path" | "source"), Yaml::String(sp), Yaml::String(ep))
                    if sp.starts_with('/') && !ep.starts_with('/') =>
                {
                    sp.trim_start_matches('/') == ep
                }
                _ => seed_within(v, ev),
            })
        }),
        (Yaml::Array(s), Yaml::Array(e)) => {
            s.len() == e.len() && s.iter().zip(e).all(|(a, b)| seed_within(a, b))
        }
        _ => seed == example,
    }
}

#[test]
fn misspelt_role_fails_naming_it_with_its_line_and_the_right_name() {
    let right = "agents: [content-creator, visual-storyteller, brand-guardian,";
    let wrong = "agents: [content-creator, visual-storyteller, brand-guardain,";
    let (_dir, file, text) = example_copy(|t| {
        assert_eq!(t.matches(right).count(), 1);
        t.replacen(right, wrong, 1)
    });
    let checked = check_file(&file);
    assert!(checked.studio.is_none(), "a misspelt role must fail");
    let errs = errors(&checked);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = errs[0];
    assert_eq!(e.file, file);
    assert_eq!(e.line, Some(line_of(&text, wrong)));
    assert_eq!(
        e.key,
        "triggers.scheduled[0].daily_content_generation.agents[2]"
    );
    assert!(e.message.contains("\"brand-guardain\""), "{}", e.message);
    assert!(
        e.message.contains("did you mean \"brand-guardian\""),
        "{}",
        e.message
    );
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}:{}: error: ",
            file.display(),
            line_of(&text, wrong)
        )),
        "{shown}"
    );

    // `load` fails with the same problem.
    let problems = load_with_env(&file, no_env()).expect_err("load must fail");
    assert!(problems.has_errors());
    assert!(problems.0.contains(e));
}

/// A small studio with one problem of every kind; `<<name>>` marks lines the
/// test looks up.
const BROKEN: &str = r#"studio:
  name: "Broken"
  timezone: "Europe/Madrid"
reviewers:
  alice:
    name: "Alice"
workflows:
  wf:
    steps:
      - id: first
        role: writer
        task: "Write."
        inputs: [trigger, second]   # <<input>>
        timeout: "ten minutes"      # <<timeout>>
      - id: second
        role: writer
        task: "Write again."
        inputs: [first]
        colour: red                 # <<unknown-key>>
  wf2:
    steps:
      - id: no-task                 # <<no-task>>
        role: writer
      - id: ghostly
        role: ghost                 # <<ghost>>
        task: "Haunt."
triggers:
  scheduled:
    - bad_time:
        time: "25:00"               # <<schedule>>
        workflow: wf
    - bad_interval:
        interval: "6 parsecs"       # <<interval>>
        workflow: wf
    - twice:                        # <<twice-1>>
        time: "09:00"
        workflow: wf
    - twice:                        # <<twice-2>>
        time: "10:00"
        workflow: wf
    - lost:
        time: "11:00"
        workflow: "wf-typo"         # <<workflow>>
  event_based:
    - threshold:
        metric: "engagement_rate <> 0.05"   # <<predicate>>
        workflow: wf
feedback_loops:
  agent_to_human:
    - quality_gates:
        - gate:
            threshold: "big_change"
            reviewers: ["bob"]      # <<reviewer>>
            sla: "4 fortnights"     # <<sla>>
progress_metrics:
  output:
    - pieces:
        target: "< lots"            # <<target>>
        tracker: writer
"#;

#[test]
fn every_kind_of_problem_is_reported_together_with_its_line() {
    let (dir, file) = studio_in_tempdir(
        BROKEN,
        &[
            ("a-writer.md", role_text("writer", "")),
            ("b-writer.md", role_text("writer", "")),
            (
                "broken.md",
                "---\nname: broken\ndescription: one: two\n---\nBody.\n".to_string(),
            ),
        ],
    );
    let at = |marker: &str| line_of(BROKEN, &format!("<<{marker}>>"));
    let checked = check_file(&file);
    assert!(checked.studio.is_none());

    // (file, line, key, part of the message)
    let expected: Vec<(PathBuf, usize, &str, &str)> = vec![
        (
            file.clone(),
            at("input"),
            "workflows.wf.steps[0].inputs[1]",
            "\"second\" is neither `trigger` nor an earlier step",
        ),
        (
            file.clone(),
            at("timeout"),
            "workflows.wf.steps[0].timeout",
            "bad duration",
        ),
        (
            file.clone(),
            at("unknown-key"),
            "workflows.wf.steps[1].colour",
            "unknown key `colour`; expected one of: id, role, task, inputs, timeout, retries, review, labels",
        ),
        (
            file.clone(),
            at("no-task"),
            "workflows.wf2.steps[0]",
            "`task` is required",
        ),
        (
            file.clone(),
            at("ghost"),
            "workflows.wf2.steps[1].role",
            "unknown role \"ghost\"",
        ),
        (
            file.clone(),
            at("schedule"),
            "triggers.scheduled[0].bad_time.time",
            "bad schedule",
        ),
        (
            file.clone(),
            at("interval"),
            "triggers.scheduled[1].bad_interval.interval",
            "bad interval",
        ),
        (
            file.clone(),
            at("twice-2"),
            "triggers.scheduled[3].twice",
            "trigger name \"twice\" is used twice",
        ),
        (
            file.clone(),
            at("workflow"),
            "triggers.scheduled[4].lost.workflow",
            "unknown workflow \"wf-typo\"",
        ),
        (
            file.clone(),
            at("predicate"),
            "triggers.event_based[0].threshold.metric",
            "bad predicate",
        ),
        (
            file.clone(),
            at("reviewer"),
            "feedback_loops.agent_to_human[0].quality_gates[0].gate.reviewers[0]",
            "unknown reviewer \"bob\"",
        ),
        (
            file.clone(),
            at("sla"),
            "feedback_loops.agent_to_human[0].quality_gates[0].gate.sla",
            "bad SLA",
        ),
        (
            file.clone(),
            at("target"),
            "progress_metrics.output[0].pieces.target",
            "bad target",
        ),
        (
            dir.path().join("agents/b-writer.md"),
            2,
            "name",
            "role \"writer\" is also defined in",
        ),
        (
            dir.path().join("agents/broken.md"),
            3,
            "",
            "front matter is not valid YAML",
        ),
    ];

    let errs = errors(&checked);
    let mut missing = Vec::new();
    for (file, line, key, message) in &expected {
        let found = errs.iter().any(|p| {
            &p.file == file && p.line == Some(*line) && p.key == *key && p.message.contains(message)
        });
        if !found {
            missing.push(format!("{}:{line}: {key}: …{message}…", file.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "not reported:\n{}\nreported:\n{}",
        missing.join("\n"),
        errs.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        errs.len(),
        expected.len(),
        "unexpected extra errors:\n{}",
        errs.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let dup = errs.iter().find(|p| p.key == "name").unwrap();
    assert!(dup.message.contains("a-writer.md"), "{}", dup.message);
}

#[test]
fn yaml_syntax_error_names_its_line() {
    // (text, the line the error is on)
    let cases = [
        // Indented too far.
        (
            "studio:\n  name: \"Ok\"\n   bad: indent\nserver:\n  nats_url: x\n",
            "bad: indent",
        ),
        // A tab for indentation.
        ("studio:\n  name: \"Ok\"\n\tbad: tab\n", "bad: tab"),
        // An unterminated string.
        (
            "studio:\n  name: \"Broken\"\nserver:\n  nats_url: \"nats://x\n  grpc_addr: 127.0.0.1:1\n",
            "nats_url",
        ),
        // An unclosed flow list: the parser stops at the next key inside it.
        (
            "studio:\n  name: \"Ok\"\nworkflows:\n  wf:\n    steps: [a, b\n    description: x\n",
            "description: x",
        ),
    ];
    for (text, needle) in cases {
        let (_dir, file) = studio_in_tempdir(text, &[]);
        let checked = check_file(&file);
        assert!(checked.studio.is_none(), "{text}");
        assert_eq!(checked.problems.len(), 1, "{:#?}", checked.problems);
        let p = &checked.problems[0];
        assert_eq!(p.severity, Severity::Error);
        assert_eq!(p.file, file);
        assert!(p.message.contains("not valid YAML"), "{}", p.message);
        assert_eq!(p.line, Some(line_of(text, needle)), "{p}\nin\n{text}");
        assert!(
            p.to_string().starts_with(&format!(
                "{}:{}: error: ",
                file.display(),
                line_of(text, needle)
            )),
            "{p}"
        );
    }
}

#[test]
fn duplicate_key_in_a_map_names_the_key_and_its_line() {
    let text = "studio:\n  name: \"Twice\"\nserver:\n  nats_url: \"nats://a:4222\"\n  http_addr: 127.0.0.1:8080\n  nats_url: \"nats://b:4222\"\n";
    let (_dir, file) = studio_in_tempdir(text, &[]);
    let checked = check_file(&file);
    assert!(checked.studio.is_none());
    assert_eq!(checked.problems.len(), 1, "{:#?}", checked.problems);
    let p = &checked.problems[0];
    assert_eq!(p.severity, Severity::Error);
    assert_eq!(p.key, "server.nats_url");
    assert_eq!(p.line, Some(6));
    assert!(p.message.contains("appears twice"), "{}", p.message);
}

#[test]
fn env_overrides_change_nats_url_and_bus_max_deliver() {
    let (plain, _) = load_example();
    assert_eq!(plain.server.nats_url, "nats://127.0.0.1:4222");
    assert_eq!(plain.server.bus.max_deliver, 5);

    let env = vec![
        (
            "CONCIERTO__SERVER__NATS_URL".to_string(),
            "nats://10.1.2.3:4333".to_string(),
        ),
        (
            "CONCIERTO__SERVER__BUS__MAX_DELIVER".to_string(),
            "9".to_string(),
        ),
        // Variables without the prefix are ignored.
        (
            "SERVER__NATS_URL".to_string(),
            "nats://ignored:1".to_string(),
        ),
    ];
    let checked = check_with_env(&example_file(), env.clone());
    assert!(errors(&checked).is_empty(), "{:#?}", checked.problems);
    let studio = checked.studio.unwrap();
    assert_eq!(studio.server.nats_url, "nats://10.1.2.3:4333");
    assert_eq!(studio.server.bus.max_deliver, 9);
    // The rest is as in the file.
    assert_eq!(studio.server.bus.ack_wait, secs(30));
    assert_eq!(studio.server.grpc_addr, "127.0.0.1:50051");
    assert_eq!(studio.triggers.len(), 6);

    let loaded = load_with_env(&example_file(), env).unwrap();
    assert_eq!(loaded.server.nats_url, "nats://10.1.2.3:4333");
    assert_eq!(loaded.server.bus.max_deliver, 9);

    // A bad value from the environment is reported like one in the file.
    let checked = check_with_env(
        &example_file(),
        [(
            "CONCIERTO__SERVER__BUS__MAX_DELIVER".to_string(),
            "0".to_string(),
        )],
    );
    assert!(checked.studio.is_none());
    assert!(
        errors(&checked)
            .iter()
            .any(|p| p.key == "server.bus.max_deliver"),
        "{:#?}",
        checked.problems
    );
}

#[test]
fn role_files_are_found_in_sub_folders_with_tools_as_list_or_comma_string() {
    let text = r#"studio:
  name: "Departments"
workflows:
  make:
    steps:
      - id: design
        role: ui-designer
        task: "Design."
      - id: write
        role: content-creator
        task: "Write."
        inputs: [design]
      - id: check
        role: brand-guardian
        task: "Check."
        inputs: [write]
"#;
    let (dir, file) = studio_in_tempdir(
        text,
        &[
            (
                "design/ui-designer.md",
                role_text("ui-designer", "tools: [Read, Write, Glob]\n"),
            ),
            (
                "marketing/social/content-creator.md",
                role_text("content-creator", "tools: Read, Write, WebSearch\n"),
            ),
            ("brand-guardian.md", role_text("brand-guardian", "")),
            ("README.txt", "not a role".to_string()),
        ],
    );
    let checked = check_file(&file);
    assert!(checked.problems.is_empty(), "{:#?}", checked.problems);
    let studio = checked.studio.unwrap();
    assert_eq!(studio.roles.len(), 3, "{:?}", studio.roles.keys());

    let r = &studio.roles["ui-designer"];
    assert_eq!(r.file, dir.path().join("agents/design/ui-designer.md"));
    assert_eq!(strings(&r.tools), ["Read", "Write", "Glob"]);
    assert_eq!(r.prompt, "You are ui-designer.");

    let r = &studio.roles["content-creator"];
    assert_eq!(
        r.file,
        dir.path()
            .join("agents/marketing/social/content-creator.md")
    );
    assert_eq!(strings(&r.tools), ["Read", "Write", "WebSearch"]);

    let r = &studio.roles["brand-guardian"];
    assert!(r.tools.is_empty());
    assert_eq!(r.line, 2);
}
