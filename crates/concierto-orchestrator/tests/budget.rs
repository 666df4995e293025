//! Budgets in the orchestrator's state machine: what a task may spend, a run
//! stopped at its budget with the reason on the step, a day budget that pauses
//! runs until the next UTC day, and spend that survives a restart.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Budget, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Effects, Engine, Limits};
use concierto_proto::v1;

fn studio(budget: Budget, role: Option<(&str, Budget)>) -> Arc<Studio> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut s = config::load_with_env(&path, Vec::new()).expect("example studio loads");
    s.agents.budget = budget;
    s.agents.budget_owner = vec!["creative_director".into()];
    if let Some((name, b)) = role {
        s.agents.roles.entry(name.to_string()).or_default().budget = b;
    }
    Arc::new(s)
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn engine(studio: Arc<Studio>, store: Arc<dyn KvStore>) -> Engine {
    let limits = Limits {
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(60),
        ..Limits::default()
    };
    let mut e = Engine::new(studio, store, limits);
    e.recover(t(0)).unwrap();
    e
}

fn start(run_id: &str) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: "market-intelligence".into(),
        trigger: "test".into(),
        priority: v1::Priority::Normal as i32,
        ..Default::default()
    }
}

fn done(task: &v1::Task, cost_usd: f64) -> v1::TaskResult {
    v1::TaskResult {
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        role: task.role.clone(),
        worker_id: format!("{}.w1", task.role),
        status: v1::TaskStatus::Succeeded as i32,
        output: format!("output of {}", task.step_id),
        usage: Some(v1::Usage {
            executor: "openai".into(),
            model: "m".into(),
            input_tokens: 1000,
            output_tokens: 100,
            latency_ms: 5,
            cost_usd,
        }),
        ..Default::default()
    }
}

fn one(fx: &Effects) -> v1::Task {
    assert_eq!(fx.tasks.len(), 1, "one task dispatched: {:?}", fx.tasks);
    fx.tasks[0].clone()
}

fn run(e: &Engine, id: &str) -> v1::Run {
    e.get(id).unwrap().expect("run known")
}

fn step<'a>(r: &'a v1::Run, id: &str) -> &'a v1::RunStep {
    r.steps.iter().find(|s| s.step_id == id).expect("step")
}

#[test]
fn a_task_gets_the_least_that_is_left_of_every_limit() {
    let b = Budget {
        per_step_usd: Some(0.50),
        per_run_usd: Some(1.00),
        per_day_usd: Some(10.0),
    };
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(b, None), store);
    let first = one(&e.start_run(start("r1"), t(0)).unwrap());
    let budget = first.budget.clone().expect("a budget");
    assert_eq!(budget.usd, 0.50);
    assert_eq!(budget.limit, "agents.budget.per_step_usd");
    // After $0.70, the run has $0.30 left: less than a step's $0.50.
    let second = one(&e.apply_result(done(&first, 0.70), t(1)).unwrap());
    let budget = second.budget.clone().expect("a budget");
    assert!((budget.usd - 0.30).abs() < 1e-9, "{budget:?}");
    assert_eq!(budget.limit, "agents.budget.per_run_usd");
}

#[test]
fn no_budget_no_limit_on_the_task() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(Budget::default(), None), store);
    let first = one(&e.start_run(start("r1"), t(0)).unwrap());
    assert_eq!(first.budget, None);
}

#[test]
fn a_run_stops_at_its_budget_with_the_reason_on_the_step() {
    let b = Budget {
        per_run_usd: Some(0.10),
        ..Budget::default()
    };
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(b, None), store);
    let first = one(&e.start_run(start("r1"), t(0)).unwrap());
    assert_eq!(first.budget.as_ref().map(|b| b.usd), Some(0.10));
    // The step cost more than the run may spend: nothing more starts.
    let fx = e.apply_result(done(&first, 0.12), t(1)).unwrap();
    assert!(fx.tasks.is_empty(), "nothing dispatched: {:?}", fx.tasks);
    let r = run(&e, "r1");
    assert_eq!(r.state(), v1::RunState::Failed);
    let brief = step(&r, "competitive-brief");
    assert_eq!(brief.state(), v1::StepState::Failed);
    assert!(
        brief.error.contains("budget reached") && brief.error.contains("agents.budget.per_run_usd"),
        "{}",
        brief.error
    );
    assert!(
        brief.error.contains("$0.1200 of its $0.1000"),
        "{}",
        brief.error
    );
    assert!(r.error.contains("budget reached"), "{}", r.error);
    let ev = fx
        .budgets
        .iter()
        .find(|b| b.scope == "run")
        .expect("a run budget event");
    assert_eq!(ev.run_id, "r1");
    assert_eq!(ev.limit, "agents.budget.per_run_usd");
    assert_eq!(ev.owners, vec!["creative_director".to_string()]);
}

#[test]
fn a_roles_own_run_budget_counts_only_its_spend() {
    let role = Budget {
        per_run_usd: Some(0.05),
        ..Budget::default()
    };
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(
        studio(Budget::default(), Some(("competitive-strategist", role))),
        store,
    );
    let first = one(&e.start_run(start("r1"), t(0)).unwrap());
    // trend-researcher has no limit of its own: $1 spent by it leaves the
    // strategist's $0.05 whole.
    assert_eq!(first.budget, None);
    let second = one(&e.apply_result(done(&first, 1.0), t(1)).unwrap());
    assert_eq!(second.role, "competitive-strategist");
    let b = second.budget.clone().expect("the role's budget");
    assert_eq!(b.usd, 0.05);
    assert_eq!(
        b.limit,
        "agents.roles.competitive-strategist.budget.per_run_usd"
    );
}

#[test]
fn a_spent_day_budget_pauses_new_runs_until_the_next_day_and_tells_the_owners() {
    let b = Budget {
        per_day_usd: Some(1.0),
        ..Budget::default()
    };
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(b, None), store.clone());
    let first = one(&e.start_run(start("r1"), t(0)).unwrap());
    assert_eq!(first.budget.as_ref().map(|b| b.usd), Some(1.0));
    let fx = e.apply_result(done(&first, 1.5), t(1)).unwrap();
    // r1's next step waits for the budget too: paused, not failed.
    assert!(fx.tasks.is_empty());
    let ev = fx.budgets.first().expect("the day's budget is announced");
    assert_eq!(ev.scope, "day");
    assert_eq!(ev.day, "2026-11-24");
    assert_eq!(ev.owners, vec!["creative_director".to_string()]);
    let r1 = run(&e, "r1");
    assert_eq!(r1.state(), v1::RunState::Pending);
    assert_eq!(
        step(&r1, "competitive-brief").state(),
        v1::StepState::Queued
    );
    // A new run starts paused; the budget is announced once a day.
    let fx = e.start_run(start("r2"), t(60)).unwrap();
    assert!(fx.tasks.is_empty());
    assert!(fx.budgets.is_empty(), "announced once: {:?}", fx.budgets);
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.message.contains("paused: the day's budget is spent")),
        "{:?}",
        fx.events
    );
    assert_eq!(run(&e, "r2").state(), v1::RunState::Pending);
    // Ticks the same day change nothing.
    assert!(e.tick(t(3600)).unwrap().tasks.is_empty());
    // A restart keeps the day's spend: still paused.
    drop(e);
    let mut e = engine(studio(b, None), store);
    assert!(e.tick(t(3700)).unwrap().tasks.is_empty());
    // The next UTC day both go on.
    let next_day = t(15 * 3600 + 1);
    let fx = e.tick(next_day).unwrap();
    let mut runs: Vec<&str> = fx.tasks.iter().map(|t| t.run_id.as_str()).collect();
    runs.sort();
    assert_eq!(runs, vec!["r1", "r2"]);
    assert_eq!(run(&e, "r1").state(), v1::RunState::Running);
}
