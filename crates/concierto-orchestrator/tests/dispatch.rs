//! Dispatch on the state machine: one `dispatched` event per step, limits
//! that follow the live capacity of a role's workers (heartbeats), and a
//! large backlog served in queue order.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Effects, Engine, Limits};
use concierto_proto::v1;

/// The example studio with `three-steps`: the first three steps of
/// `market-intelligence` (no review loop), and `writer` steps in `one-step`.
fn studio(replicas: Option<u32>) -> Arc<Studio> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut s = config::load_with_env(&path, Vec::new()).expect("example studio loads");
    let mut three = s.workflows["market-intelligence"].clone();
    three.steps.truncate(3);
    three.on_failure = None;
    for st in &mut three.steps {
        st.review = None;
        st.context.clear();
    }
    let mut one = three.clone();
    one.steps.truncate(1);
    s.workflows.insert("three-steps".into(), three);
    s.workflows.insert("one-step".into(), one);
    let role = s.workflows["one-step"].steps[0].role.clone();
    let settings = s.agents.roles.entry(role).or_default();
    settings.max_in_flight = Some(2);
    settings.replicas = replicas;
    Arc::new(s)
}

fn t(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
}

fn engine(studio: Arc<Studio>) -> Engine {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio.clone(), store, Limits::for_studio(&studio));
    e.recover(t(0)).unwrap();
    e
}

fn start(run_id: &str, workflow: &str) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: workflow.into(),
        trigger: "test".into(),
        ..Default::default()
    }
}

fn ok(task: &v1::Task) -> v1::TaskResult {
    v1::TaskResult {
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        role: task.role.clone(),
        worker_id: "w1".into(),
        status: v1::TaskStatus::Succeeded as i32,
        output: format!("output of {}", task.step_id),
        ..Default::default()
    }
}

fn one(fx: &Effects) -> v1::Task {
    assert_eq!(fx.tasks.len(), 1, "one task dispatched: {:?}", fx.tasks);
    fx.tasks[0].clone()
}

#[test]
fn a_three_step_run_announces_each_step_dispatched_once() {
    let mut e = engine(studio(None));
    let mut events = Vec::new();
    let fx = e.start_run(start("r1", "three-steps"), t(0)).unwrap();
    events.extend(fx.events.clone());
    let mut task = one(&fx);
    for i in 1..=3 {
        let fx = e.apply_result(ok(&task), t(i)).unwrap();
        events.extend(fx.events.clone());
        if i < 3 {
            task = one(&fx);
        } else {
            assert!(fx.tasks.is_empty());
        }
    }
    let lines: Vec<String> = events
        .iter()
        .map(|ev| format!("{} {:?} {}", ev.step_id, ev.step_state(), ev.message))
        .collect();
    let dispatched = events
        .iter()
        .filter(|ev| ev.step_state() == v1::StepState::Dispatched)
        .count();
    assert_eq!(dispatched, 3, "{lines:#?}");
    // Started, then per step dispatched (a step dispatched as it is queued
    // is not announced queued as well) and done; then succeeded.
    assert_eq!(events.len(), 8, "{lines:#?}");
    assert!(
        !events.iter().any(|ev| ev.message == "queued"),
        "{lines:#?}"
    );
    let done: Vec<&str> = events
        .iter()
        .filter(|ev| ev.message == "done by w1")
        .map(|ev| ev.step_id.as_str())
        .collect();
    assert_eq!(done.len(), 3, "{lines:#?}");
    assert!(
        events
            .iter()
            .filter(|ev| ev.message.starts_with("done by"))
            .all(|ev| ev.step_state() == v1::StepState::Succeeded)
    );
    let seqs: Vec<u64> = events.iter().map(|ev| ev.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_step_that_waits_for_room_is_announced_queued_then_dispatched() {
    let mut e = engine(studio(None));
    let first = start_many(&mut e, 2);
    let fx = e.start_run(start("r2", "one-step"), t(0)).unwrap();
    assert!(fx.tasks.is_empty(), "the role's limit is 2");
    let waiting: Vec<(u64, &str, v1::StepState)> = fx
        .events
        .iter()
        .map(|ev| (ev.seq, ev.message.as_str(), ev.step_state()))
        .collect();
    assert_eq!(
        waiting,
        vec![
            (1, "run started", v1::StepState::Unspecified),
            (2, "queued", v1::StepState::Queued),
        ]
    );
    let fx = e.apply_result(ok(&first[0]), t(1)).unwrap();
    let task = one(&fx);
    assert_eq!(task.run_id, "r2");
    let r2: Vec<(u64, v1::StepState)> = fx
        .events
        .iter()
        .filter(|ev| ev.run_id == "r2")
        .map(|ev| (ev.seq, ev.step_state()))
        .collect();
    assert_eq!(r2, vec![(3, v1::StepState::Dispatched)]);
}

fn beat(worker: &str, capacity: u32, state: v1::AgentState) -> v1::AgentHeartbeat {
    v1::AgentHeartbeat {
        role: "trend-researcher".into(),
        worker_id: worker.into(),
        capacity,
        state: state as i32,
        ..Default::default()
    }
}

fn start_many(e: &mut Engine, n: usize) -> Vec<v1::Task> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let fx = e
            .start_run(start(&format!("r{i}"), "one-step"), t(0))
            .unwrap();
        tasks.extend(fx.tasks);
    }
    tasks
}

#[test]
fn heartbeats_raise_a_roles_limit_and_a_lapsed_workers_share_is_released() {
    let mut e = engine(studio(None));
    assert_eq!(e.limit_for_role("trend-researcher"), 2);
    let mut out = start_many(&mut e, 10);
    assert_eq!(out.len(), 2, "the static limit: 1 × max_in_flight 2");
    // Two workers of 3 slots each: six at once, dispatched as they are heard.
    let fx = e
        .apply_heartbeat(&beat("w1", 3, v1::AgentState::Starting), t(100))
        .unwrap();
    assert_eq!(fx.tasks.len(), 1);
    out.extend(fx.tasks);
    let fx = e
        .apply_heartbeat(&beat("w2", 3, v1::AgentState::Ready), t(100))
        .unwrap();
    assert_eq!(fx.tasks.len(), 3);
    out.extend(fx.tasks);
    assert_eq!(e.in_flight(), 6);
    assert_eq!(e.limit_for_role("trend-researcher"), 6);
    // w1 keeps beating; w2 falls silent and lapses after 30 s.
    e.apply_heartbeat(&beat("w1", 3, v1::AgentState::Ready), t(20_000))
        .unwrap();
    assert!(e.tick(t(29_000)).unwrap().tasks.is_empty());
    assert_eq!(e.limit_for_role("trend-researcher"), 6);
    e.tick(t(30_100)).unwrap();
    assert_eq!(e.limit_for_role("trend-researcher"), 3);
    // Six in flight over a limit of three: results release slots without
    // new dispatches until fewer than three are out.
    let mut dispatched = 0;
    for task in out.drain(..4) {
        dispatched += e.apply_result(ok(&task), t(30_200)).unwrap().tasks.len();
    }
    assert_eq!(dispatched, 1);
    assert_eq!(e.in_flight(), 3);
    // w1 stops: no live worker, the static value again.
    e.apply_heartbeat(&beat("w1", 3, v1::AgentState::Stopped), t(30_300))
        .unwrap();
    assert_eq!(e.limit_for_role("trend-researcher"), 2);
}

#[test]
fn explicit_replicas_cap_the_live_capacity() {
    let mut e = engine(studio(Some(1)));
    assert_eq!(start_many(&mut e, 6).len(), 2);
    let fx = e
        .apply_heartbeat(&beat("w1", 8, v1::AgentState::Ready), t(10))
        .unwrap();
    assert!(fx.tasks.is_empty(), "replicas: 1 × max_in_flight 2 caps it");
    assert_eq!(e.limit_for_role("trend-researcher"), 2);
    // Below the cap, the live capacity rules.
    e.apply_heartbeat(&beat("w1", 1, v1::AgentState::Ready), t(20))
        .unwrap();
    assert_eq!(e.limit_for_role("trend-researcher"), 1);
}

#[test]
fn a_partition_takes_the_ceiling_of_its_share_of_live_capacity() {
    let st = studio(None);
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(st.clone(), store, Limits::for_studio(&st));
    e.set_partition(1, 4);
    e.recover(t(0)).unwrap();
    e.apply_heartbeat(&beat("w1", 5, v1::AgentState::Ready), t(10))
        .unwrap();
    assert_eq!(e.limit_for_role("trend-researcher"), 2);
}

#[test]
fn a_large_backlog_drains_in_order_with_every_step_dispatched_once() {
    let mut e = engine(studio(None));
    let first = start_many(&mut e, 2_000);
    assert_eq!(first.len(), 2);
    assert_eq!(e.queued(), 1_998);
    let mut pending: std::collections::VecDeque<v1::Task> = first.into();
    let mut order = Vec::new();
    let mut at = 1;
    while let Some(task) = pending.pop_front() {
        order.push(task.run_id.clone());
        at += 1;
        let fx = e.apply_result(ok(&task), t(at)).unwrap();
        pending.extend(fx.tasks);
    }
    assert_eq!(order.len(), 2_000);
    let expected: Vec<String> = (0..2_000).map(|i| format!("r{i}")).collect();
    assert_eq!(order, expected, "FIFO within the class");
    assert_eq!(e.queued(), 0);
    assert_eq!(e.in_flight(), 0);
}
