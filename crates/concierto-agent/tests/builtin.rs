//! The builtin executor: deterministic, sensible outputs for each special role,
//! the test parameters, brand rules from a folder.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use concierto_agent::builtin::{BRAND_DIR, FOOTER, GENERATED_BY, MAJOR_BRAND_CHANGES};
use concierto_agent::{BrandRules, BuiltinExecutor, Executor, WorkerOptions, executor_for};
use concierto_core::config::Studio;
use concierto_core::roles::RoleDef;
use concierto_proto::v1::{ReviewAction, ReviewContext, Task, TaskInput, TaskStatus};

fn studio() -> &'static Studio {
    static STUDIO: OnceLock<Studio> = OnceLock::new();
    STUDIO.get_or_init(|| {
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/concierto.yaml");
        concierto_core::config::load(&file).expect("the example studio loads")
    })
}

fn role(name: &str) -> &'static RoleDef {
    studio()
        .roles
        .get(name)
        .unwrap_or_else(|| panic!("role {name} in the example studio"))
}

fn input(name: &str, content: &str) -> TaskInput {
    TaskInput {
        name: name.into(),
        content: content.into(),
        content_type: "text/plain".into(),
    }
}

fn task(role: &str, instruction: &str, inputs: Vec<TaskInput>) -> Task {
    Task {
        task_id: format!("run-1/{role}/1"),
        run_id: "run-1".into(),
        step_id: role.into(),
        attempt: 1,
        role: role.into(),
        instruction: instruction.into(),
        inputs,
        ..Default::default()
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

const TRIGGER: &str = "Trigger daily_content_generation fired at 2026-11-24T09:00:00+01:00. \
    Audience: independent designers and small brands. Sustainable packaging design is rising this season. \
    Handmade typography is back, and warm colour palettes lead the new packaging work. \
    Studios that show their sustainable packaging process earn more trust.";

const GOOD_DRAFT: &str = "## Piece 1: Sustainable packaging\n\
    ### Headline\nA: Sustainable packaging, made with care\nB: What handmade typography brings to packaging\n\
    ### Body\nOur studio designs packaging that lasts. We chose recycled board and warm, clear colours. \
    Each label is set in our own handmade type. Come see how the craft comes together.\n\
    ### Call to action\nTell us what your packaging says about you.";

const HYPE_DRAFT: &str = "UNLOCK the most REVOLUTIONARY, game-changer packaging EVER!!! \
    Our world-class, cutting-edge, best-in-class synergy will disrupt the market and leverage insane growth \
    that nobody has ever seen before in the whole history of design and packaging anywhere on earth!!! \
    Results guaranteed, totally risk-free!!!";

#[tokio::test]
async fn builtin_outputs_for_each_special_role_are_deterministic() {
    let ex = BuiltinExecutor::default();
    let cases = [
        task(
            "content-creator",
            "Write today's content pieces from the suggested angles, one piece per angle.",
            vec![input("trigger", TRIGGER)],
        ),
        task(
            "brand-guardian",
            "Check each piece against the brand and give a verdict.",
            vec![
                input("trigger", TRIGGER),
                input("draft-content", GOOD_DRAFT),
            ],
        ),
        task(
            "analytics-reporter",
            "Summarise the week.",
            vec![input(
                "trend-scan",
                "Visits 1,200; engagement rate 0.04; conversion 3.5%.",
            )],
        ),
        task(
            "feedback-synthesizer",
            "Categorise this feedback.",
            vec![input("trigger", "The logo colours are off-brand.")],
        ),
        task(
            "trend-researcher",
            "Summarise today's trends and suggest three content angles.",
            vec![input("trigger", TRIGGER)],
        ),
    ];
    for t in cases {
        let r = role(&t.role);
        let first = ex.execute(r, &t).await;
        let second = ex.execute(r, &t).await;
        assert_eq!(first.status, TaskStatus::Succeeded, "{}: {first:?}", t.role);
        assert!(!first.output.is_empty(), "{}", t.role);
        assert_eq!(first, second, "{} gave two different outcomes", t.role);
        assert_eq!(
            first,
            ex.work(r, &t),
            "{}: work() and execute() differ",
            t.role
        );
        // A fresh executor gives the same, too: no hidden state.
        assert_eq!(first, BuiltinExecutor::default().work(r, &t), "{}", t.role);
    }
}

#[test]
fn every_builtin_output_says_it_came_from_builtin() {
    let ex = BuiltinExecutor::default();
    for name in [
        "content-creator",
        "brand-guardian",
        "analytics-reporter",
        "feedback-synthesizer",
        "growth-hacker",
    ] {
        let t = task(name, "Do the work.", vec![input("trigger", TRIGGER)]);
        let out = ex.work(role(name), &t);
        assert_eq!(out.usage.executor, "builtin", "{name}");
        assert_eq!(out.usage.model, "builtin-v1", "{name}");
        assert!(
            out.usage.input_tokens > 0 && out.usage.output_tokens > 0,
            "{name}: {:?}",
            out.usage
        );
        assert_eq!(
            out.usage.output_tokens,
            out.output.split_whitespace().count() as u64,
            "{name}: output tokens are whitespace words"
        );
        match out.content_type.as_str() {
            "application/json" => {
                assert_eq!(json(&out.output)["generated_by"], GENERATED_BY, "{name}")
            }
            "text/markdown" => assert!(
                out.output.trim_end().ends_with(FOOTER),
                "{name}: {}",
                out.output
            ),
            other => panic!("{name}: unexpected content type {other}"),
        }
    }
}

#[test]
fn a_draft_full_of_banned_words_scores_low_and_fails() {
    let ex = BuiltinExecutor::default();
    let t = task(
        "brand-guardian",
        "Check the draft.",
        vec![input("draft-content", HYPE_DRAFT)],
    );
    let out = ex.work(role("brand-guardian"), &t);
    let v = out.verdict.expect("a verdict");
    assert!(!v.pass);
    assert!(v.score < 0.3, "score {}", v.score);
    assert!(
        v.reasons.iter().any(|r| r.contains("'unlock'")),
        "{:?}",
        v.reasons
    );
    assert!(
        v.reasons.iter().any(|r| r.contains("exclamation")),
        "{:?}",
        v.reasons
    );
    assert!(
        v.reasons[0].starts_with("claim:"),
        "the risky claim comes first: {:?}",
        v.reasons
    );
    assert!(v.notes.contains("below the 0.85"), "{}", v.notes);
    let j = json(&out.output);
    assert_eq!(j["pass"], false);
    assert_eq!(j["score"].as_f64(), Some(v.score));
    assert_eq!(j["reasons"].as_array().map(Vec::len), Some(v.reasons.len()));
}

#[test]
fn a_good_draft_passes_the_brand_check() {
    let ex = BuiltinExecutor::default();
    // The trigger payload is context, not the draft: only the draft is scored.
    let t = task(
        "brand-guardian",
        "Check the draft.",
        vec![
            input("trigger", HYPE_DRAFT),
            input("draft-content", GOOD_DRAFT),
        ],
    );
    let v = ex
        .work(role("brand-guardian"), &t)
        .verdict
        .expect("a verdict");
    assert!(v.pass, "{v:?}");
    assert!(v.score >= 0.85, "{v:?}");
    assert!(v.reasons.is_empty(), "{v:?}");

    // A review context's draft is what gets scored.
    let mut t = task(
        "brand-guardian",
        "Review.",
        vec![input("trigger", GOOD_DRAFT)],
    );
    t.review = Some(ReviewContext {
        r#loop: "creator_to_reviewer".into(),
        round: 1,
        subject_step: "draft-content".into(),
        draft: HYPE_DRAFT.into(),
        notes: String::new(),
        action: ReviewAction::Review as i32,
        pass_mark: 0.85,
    });
    assert!(
        !ex.work(role("brand-guardian"), &t)
            .verdict
            .expect("verdict")
            .pass
    );
}

#[test]
fn a_minor_slip_still_passes_and_says_what_to_fix() {
    let ex = BuiltinExecutor::default();
    let draft = format!("{GOOD_DRAFT}\nWe love it! See you there!");
    let t = task(
        "brand-guardian",
        "Check.",
        vec![input("draft-content", &draft)],
    );
    let v = ex
        .work(role("brand-guardian"), &t)
        .verdict
        .expect("verdict");
    assert!(v.pass, "{v:?}");
    assert!((v.score - 0.9).abs() < 1e-9, "{v:?}");
    assert_eq!(v.reasons.len(), 1, "{v:?}");
    assert!(v.notes.contains("exclamation"), "{}", v.notes);
}

#[test]
fn a_change_to_the_brand_itself_is_labelled_for_a_person() {
    let ex = BuiltinExecutor::default();
    let draft = format!("{GOOD_DRAFT}\nThe studio proposes a new logo with a softer, warm mark.");
    let t = task(
        "brand-guardian",
        "Check.",
        vec![input("visual-concept", &draft)],
    );
    let out = ex.work(role("brand-guardian"), &t);
    assert_eq!(out.labels, [MAJOR_BRAND_CHANGES]);
    assert_eq!(json(&out.output)["labels"][0], MAJOR_BRAND_CHANGES);
}

#[test]
fn content_creator_drafts_from_the_inputs_key_phrases_in_the_role_format() {
    let ex = BuiltinExecutor::default();
    let t = task(
        "content-creator",
        "Write a social post about this season's packaging work.",
        vec![input("trigger", TRIGGER)],
    );
    let out = ex.work(role("content-creator"), &t);
    assert_eq!(out.content_type, "text/markdown");
    let o = &out.output;
    for section in [
        "## Piece 1:",
        "channel: social post",
        "### Headline",
        "A: ",
        "B: ",
        "### Body",
        "### Call to action",
        "### Notes for reviewers",
    ] {
        assert!(o.contains(section), "missing {section:?} in\n{o}");
    }
    assert!(
        o.contains("Sustainable Packaging"),
        "led by the most frequent phrase:\n{o}"
    );
    assert!(o.contains("Key phrases: sustainable packaging"), "{o}");
    assert_eq!(
        o.matches("## Piece").count(),
        1,
        "one piece when the brief asks for one"
    );
    let post = o
        .lines()
        .find(|l| l.starts_with("Post: "))
        .expect("a post line");
    assert!(post.chars().count() <= 280 + 6, "{post}");
}

#[test]
fn content_creator_writes_one_piece_per_angle_and_its_drafts_pass_the_brand_check() {
    // The daily content pipeline of the example studio, every step builtin.
    let ex = BuiltinExecutor::default();
    let wf = &studio().workflows["daily-content-pipeline"];
    let mut outputs: Vec<(String, String)> = vec![("trigger".into(), TRIGGER.into())];
    let mut verdict = None;
    for step in &wf.steps {
        let inputs = step
            .inputs
            .iter()
            .map(|n| {
                let (_, o) = outputs
                    .iter()
                    .find(|(k, _)| k == n)
                    .expect("input produced earlier");
                input(n, o)
            })
            .collect();
        let t = task(&step.role, &step.task, inputs);
        let out = ex.work(role(&step.role), &t);
        assert_eq!(out.status, TaskStatus::Succeeded, "{}", step.id);
        if step.id == "research-context" {
            assert!(out.output.contains("### Angles"), "{}", out.output);
        }
        if step.id == "draft-content" {
            assert_eq!(
                out.output.matches("## Piece").count(),
                3,
                "one per angle:\n{}",
                out.output
            );
        }
        verdict = out.verdict.clone();
        outputs.push((step.id.clone(), out.output));
    }
    let v = verdict.expect("brand-check gives a verdict");
    assert!(v.pass, "builtin drafts pass the builtin brand check: {v:?}");
}

#[test]
fn content_creator_leaves_hype_words_out_and_lists_revision_notes() {
    let ex = BuiltinExecutor::default();
    let mut t = task(
        "content-creator",
        "Rewrite the piece.",
        vec![input(
            "trigger",
            "Unlock synergy. Unlock synergy with a game-changer. Warm packaging design matters. Warm packaging design.",
        )],
    );
    t.review = Some(ReviewContext {
        r#loop: "creator_to_reviewer".into(),
        round: 2,
        subject_step: "draft-content".into(),
        draft: HYPE_DRAFT.into(),
        notes: "Replace the hype words (unlock, synergy).".into(),
        action: ReviewAction::Revise as i32,
        pass_mark: 0.85,
    });
    let out = ex.work(role("content-creator"), &t);
    let lower = out.output.to_lowercase();
    for banned in ["unlock", "synergy", "game-changer"] {
        assert!(!lower.contains(banned), "{banned} in\n{}", out.output);
    }
    assert!(out.output.contains("Revision (round 2)"), "{}", out.output);
    assert!(
        out.output
            .contains("rewritten to address the reviewer's notes"),
        "{}",
        out.output
    );
    // The revision passes the review that asked for it.
    let check = task(
        "brand-guardian",
        "Review.",
        vec![input("draft-content", &out.output)],
    );
    let v = ex
        .work(role("brand-guardian"), &check)
        .verdict
        .expect("verdict");
    assert!(v.pass, "{v:?}");
}

#[test]
fn feedback_about_off_brand_logo_colours_is_routed_to_brand() {
    let ex = BuiltinExecutor::default();
    let route = |text: &str| {
        let t = task(
            "feedback-synthesizer",
            "Categorise and route this feedback.",
            vec![input("trigger", text)],
        );
        json(&ex.work(role("feedback-synthesizer"), &t).output)
    };
    let j = route("Hi team, the logo colours are off-brand on the spring poster.");
    assert_eq!(j["category"], "brand");
    assert_eq!(
        j["roles"],
        serde_json::json!(["brand-guardian", "creative-director"])
    );
    assert!(
        j["reason"].as_str().unwrap_or("").contains("off-brand"),
        "{j}"
    );

    let j = route("The landing page is broken: the button cuts off on my phone.");
    assert_eq!(j["category"], "technical");
    assert_eq!(
        j["roles"],
        serde_json::json!(["backend-architect", "test-writer-fixer"])
    );
    assert_eq!(j["urgency"], "high");

    let j = route(
        "Engagement fell and reach is down; maybe the posting timing is wrong for this audience.",
    );
    assert_eq!(j["category"], "growth");
    assert_eq!(
        j["roles"],
        serde_json::json!(["growth-hacker", "analytics-reporter"])
    );

    let j = route("Thanks for the lovely afternoon, see you next month.");
    assert_eq!(j["category"], "other");
    assert_eq!(j["roles"], serde_json::json!(["studio-orchestrator"]));
    assert_eq!(j["urgency"], "low");
}

#[test]
fn analytics_reporter_summarises_the_figures_in_the_inputs() {
    let ex = BuiltinExecutor::default();
    let t = task(
        "analytics-reporter",
        "Summarise the weekly market intelligence report.",
        vec![
            input(
                "trend-scan",
                "Visits reached 1,200 this week. Engagement rate 0.04 on 2026-11-24.",
            ),
            input(
                "competitive-brief",
                "Competitor posts 14 times; we post 10. Conversion 3.5% against a 5% target.",
            ),
        ],
    );
    let out = ex.work(role("analytics-reporter"), &t);
    let o = &out.output;
    // 1200, 0.04, 14, 10 (the date is not a figure); percentages apart.
    assert!(
        o.contains("4 figure(s) in 2 input(s): min 0.04, max 1200, mean 306.01."),
        "{o}"
    );
    assert!(
        o.contains("2 percentage(s): min 3.5%, max 5%, mean 4.25%."),
        "{o}"
    );
    assert!(o.contains("| visits reached | 1,200 | trend-scan |"), "{o}");
    assert!(
        o.contains("Largest: 1,200 (visits reached, from trend-scan)"),
        "{o}"
    );

    let none = task(
        "analytics-reporter",
        "Summarise.",
        vec![input("trigger", "No numbers here at all.")],
    );
    assert!(
        ex.work(role("analytics-reporter"), &none)
            .output
            .contains("No figures found")
    );
}

#[test]
fn other_roles_get_a_structured_brief_from_the_instruction_and_inputs() {
    let ex = BuiltinExecutor::default();
    let t = task(
        "growth-hacker",
        "Diagnose the engagement drop named in the alert.",
        vec![input(
            "trigger",
            "Engagement rate fell below 0.05 on the spring campaign. The spring campaign posts went out late. Late posts reach fewer people.",
        )],
    );
    let o = ex.work(role("growth-hacker"), &t).output;
    assert!(
        o.starts_with("## Growth hacker brief: Diagnose the engagement drop named in the alert"),
        "{o}"
    );
    for section in [
        "### Key points",
        "### Key terms",
        "### Next actions",
        "### Sources",
        "- trigger (",
    ] {
        assert!(o.contains(section), "missing {section:?} in\n{o}");
    }
    assert!(o.contains("spring campaign"), "{o}");
}

#[test]
fn reviewer_roles_other_than_brand_guardian_give_a_completeness_verdict() {
    let ex = BuiltinExecutor::default();
    let review = |draft: &str| ReviewContext {
        r#loop: "experimenter_to_optimizer".into(),
        round: 1,
        subject_step: "experiment".into(),
        draft: draft.into(),
        notes: String::new(),
        action: ReviewAction::Review as i32,
        pass_mark: 0.85,
    };
    let mut t = task("analytics-reporter", "Review the experiment.", vec![]);
    t.review = Some(review(
        "## Experiment\n- Variant B lifted clicks from 120 to 150 (25%) over 2 weeks with 4,000 visitors per arm.\n- Decision: ship B to every channel from Monday.",
    ));
    let v = ex
        .work(role("analytics-reporter"), &t)
        .verdict
        .expect("verdict");
    assert!(v.pass, "{v:?}");
    t.review = Some(review(
        "## Experiment\n- Variant B felt better to everyone. TODO: add the data. Ship it to every channel from Monday.",
    ));
    let v = ex
        .work(role("analytics-reporter"), &t)
        .verdict
        .expect("verdict");
    assert!(!v.pass, "{v:?}");
    assert!(v.reasons.iter().any(|r| r.contains("no figure")), "{v:?}");
}

#[tokio::test]
async fn test_parameters_make_it_fail_sleep_or_do_nothing() {
    let ex = BuiltinExecutor::default();
    let r = role("content-creator");
    let with = |params: &[(&str, &str)], attempt: u32| {
        let mut t = task("content-creator", "Write.", vec![input("trigger", TRIGGER)]);
        t.attempt = attempt;
        t.params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        t
    };
    let out = ex
        .execute(r, &with(&[("builtin.fail", "retryable")], 1))
        .await;
    assert_eq!(out.status, TaskStatus::Retryable);
    assert!(
        out.error.contains("builtin.fail=retryable"),
        "{}",
        out.error
    );
    assert_eq!(out.usage.executor, "builtin");
    let out = ex.execute(r, &with(&[("builtin.fail", "fatal")], 1)).await;
    assert_eq!(out.status, TaskStatus::Failed);
    let out = ex
        .execute(r, &with(&[("builtin.fail", "sometimes")], 1))
        .await;
    assert_eq!(out.status, TaskStatus::Failed);
    assert!(
        out.error.contains("\"retryable\" or \"fatal\""),
        "{}",
        out.error
    );

    let flaky = [
        ("builtin.fail", "retryable"),
        ("builtin.fail_attempts", "2"),
    ];
    assert_eq!(
        ex.execute(r, &with(&flaky, 2)).await.status,
        TaskStatus::Retryable
    );
    assert_eq!(
        ex.execute(r, &with(&flaky, 3)).await.status,
        TaskStatus::Succeeded
    );

    let t0 = Instant::now();
    let out = ex
        .execute(r, &with(&[("builtin.sleep_ms", "150")], 1))
        .await;
    assert!(t0.elapsed() >= Duration::from_millis(150));
    assert_eq!(out.status, TaskStatus::Succeeded);
    let out = ex
        .execute(r, &with(&[("builtin.sleep_ms", "soon")], 1))
        .await;
    assert_eq!(out.status, TaskStatus::Failed);

    let out = ex.execute(r, &with(&[("builtin.noop", "true")], 1)).await;
    assert_eq!(out.status, TaskStatus::Succeeded);
    assert!(out.output.starts_with("noop"), "{}", out.output);

    let out = ex
        .execute(
            role("growth-hacker"),
            &with(&[("builtin.as", "feedback-synthesizer")], 1),
        )
        .await;
    assert_eq!(out.content_type, "application/json");
}

#[test]
fn brand_rules_load_from_the_brand_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No rules file: the defaults.
    let ex = BuiltinExecutor::new(Some(dir.path().to_path_buf())).expect("an empty folder is fine");
    assert_eq!(ex.rules(), &BrandRules::default());

    std::fs::write(
        dir.path().join("rules.yaml"),
        "vocabulary: [atelier]\nbanned: [sustainable]\npalette: ['#1f3a5f']\n",
    )
    .expect("write rules");
    let ex = BuiltinExecutor::new(Some(dir.path().to_path_buf())).expect("rules load");
    let t = task(
        "brand-guardian",
        "Check.",
        vec![input(
            "draft",
            "Our atelier makes sustainable boxes in #1f3a5f and #ff0000.",
        )],
    );
    let v = ex
        .work(role("brand-guardian"), &t)
        .verdict
        .expect("verdict");
    assert_eq!(
        v.reasons,
        [
            "voice: hype word 'sustainable'",
            "visual: colour #ff0000 is not in the palette"
        ]
    );
    assert!((v.score - 0.6).abs() < 1e-9, "{v:?}");

    std::fs::write(dir.path().join("rules.yaml"), "max_sentence_words: many\n").expect("write");
    let e = BuiltinExecutor::new(Some(dir.path().to_path_buf())).expect_err("bad rules");
    assert!(e.to_string().contains("rules.yaml"), "{e}");
    let e = BuiltinExecutor::new(Some(dir.path().join("missing"))).expect_err("missing folder");
    assert!(e.to_string().contains("missing"), "{e}");
    assert_eq!(BRAND_DIR, "brand");
}

#[test]
fn the_studio_picks_the_builtin_executor_and_the_worker_options() {
    let s = studio();
    let ex = executor_for(s, "content-creator").expect("builtin");
    assert_eq!(ex.name(), "builtin");
    assert_eq!(ex.model(role("content-creator")), "builtin-v1");
    let o = WorkerOptions::for_role(s, "content-creator");
    assert_eq!(o.max_in_flight, 4);
    assert_eq!(o.ack_wait, Duration::from_secs(30));
    assert_eq!(o.max_deliver, 5);
    assert_eq!(
        WorkerOptions::for_role(s, "brand-guardian").max_in_flight,
        8
    );
    assert_eq!(WorkerOptions::for_role(s, "ui-designer").max_in_flight, 4);
}

fn review_ctx(action: ReviewAction, pass_mark: f64) -> ReviewContext {
    ReviewContext {
        r#loop: "experimenter_to_optimizer".into(),
        round: 0,
        subject_step: String::new(),
        draft: String::new(),
        notes: String::new(),
        action: action as i32,
        pass_mark,
    }
}

#[test]
fn a_batch_review_gives_one_verdict_per_draft_named_by_its_run_and_step() {
    let ex = BuiltinExecutor::default();
    let mut t = task(
        "brand-guardian",
        "Review each draft of this batch.",
        vec![
            input("r1/draft-content", GOOD_DRAFT),
            input("r2/draft-content", HYPE_DRAFT),
            input("r3/draft-content", GOOD_DRAFT),
        ],
    );
    t.review = Some(review_ctx(ReviewAction::ReviewBatch, 0.85));
    let out = ex.work(role("brand-guardian"), &t);
    assert_eq!(out.content_type, "application/json");
    let v = json(&out.output);
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    let subjects: Vec<&str> = items
        .iter()
        .map(|i| i["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["r1/draft-content", "r2/draft-content", "r3/draft-content"]
    );
    assert_eq!(items[0]["pass"], true);
    assert_eq!(items[1]["pass"], false);
    assert!(
        items[1]["notes"].as_str().unwrap().contains("To fix"),
        "{}",
        items[1]
    );
    assert_eq!(v["generated_by"], GENERATED_BY);
    // The orchestrator's parser reads the same answer.
    let parsed = concierto_core::structured::batch_verdicts(&out.output).expect("parses");
    assert_eq!(parsed.len(), 3);
    assert!(!parsed[1].1.pass);
    let verdict = out.verdict.expect("an overall verdict");
    assert!(!verdict.pass);
    assert_eq!(verdict.reasons, vec!["r2/draft-content".to_string()]);

    // Other reviewers judge completeness, per draft too.
    let mut t = task(
        "analytics-reporter",
        "Review each experiment.",
        vec![
            input(
                "e1/run-experiment",
                "## Result\n- Signups rose 12% (n=4,000) against the control over 14 days, with the variant's headline and the same audience split across both arms of the test.",
            ),
            input("e2/run-experiment", "TODO"),
        ],
    );
    t.review = Some(review_ctx(ReviewAction::ReviewBatch, 0.85));
    let v = json(&ex.work(role("analytics-reporter"), &t).output);
    assert_eq!(v["items"][0]["pass"], true, "{v}");
    assert_eq!(v["items"][1]["pass"], false, "{v}");
}

#[test]
fn the_review_pass_mark_replaces_the_brand_rules_pass_score() {
    let ex = BuiltinExecutor::default();
    let draft = format!("{GOOD_DRAFT}\nWe love it! See you there!");
    let mut t = task("brand-guardian", "Review.", vec![]);
    let mut ctx = review_ctx(ReviewAction::Review, 0.85);
    ctx.draft = draft.clone();
    t.review = Some(ctx.clone());
    let lenient = ex.work(role("brand-guardian"), &t).verdict.unwrap();
    assert!(lenient.pass, "{lenient:?}");
    assert!(lenient.score < 1.0);
    ctx.pass_mark = 0.99;
    t.review = Some(ctx);
    let strict = ex.work(role("brand-guardian"), &t).verdict.unwrap();
    assert_eq!(strict.score, lenient.score);
    assert!(
        !strict.pass,
        "a 0.99 pass mark fails the same draft: {strict:?}"
    );
}
