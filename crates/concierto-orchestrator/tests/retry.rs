//! Retrying an ended run in the orchestrator's state machine (controlled
//! clock, real sled store), and the `RunFailed` alert of a run that failed
//! with no failure path.

mod common;

use std::sync::Arc;

use common::*;
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Engine, EngineError, Limits};
use concierto_proto::v1;

/// Runs `plain` as `id`: `a` succeeds, `b` fails for good.
fn failed_plain(e: &mut Engine, id: &str) -> concierto_orchestrator::Effects {
    let fx = e.start_run(start(id, "plain"), t(0)).unwrap();
    let a = one(&fx);
    let fx = e.apply_result(ok(&a, "three angles"), t(1)).unwrap();
    let b = one(&fx);
    assert_eq!(b.step_id, "b");
    e.apply_result(failed(&b, "the model refused"), t(2))
        .unwrap()
}

#[test]
fn a_failed_run_is_retried_from_its_failed_step_keeping_what_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(dir.path()), store, Limits::default());
    e.recover(t(0)).unwrap();

    let fx = failed_plain(&mut e, "nightly@2026-11-24T09:00:00Z");
    let old = e.get("nightly@2026-11-24T09:00:00Z").unwrap().unwrap();
    assert_eq!(old.state, v1::RunState::Failed as i32);
    // No failure path: the alert goes out, once, naming the step and role.
    assert_eq!(fx.run_failed.len(), 1, "{:?}", fx.run_failed);
    let alert = &fx.run_failed[0];
    assert_eq!(alert.run_id, "nightly@2026-11-24T09:00:00Z");
    assert_eq!(
        (alert.step_id.as_str(), alert.role.as_str()),
        ("b", "support-responder")
    );
    assert!(alert.error.contains("the model refused"), "{}", alert.error);

    // The studio changes meanwhile: the retry keeps the steps the run had.
    e.set_studio(studio_with(
        dir.path(),
        "      - id: z\n        role: trend-researcher\n        task: \"Other.\"\n        inputs: [trigger]",
    ));

    // Short id: a unique prefix is enough.
    let (id, fx) = e.retry_run("nightly@", false, "ops", t(10)).unwrap();
    assert_eq!(id, "nightly@2026-11-24T09:00:00Z~retry1");
    let b = one(&fx);
    assert_eq!((b.step_id.as_str(), b.attempt), ("b", 1));
    let a_input = b.inputs.iter().find(|i| i.name == "a").expect("input a");
    assert_eq!(
        a_input.content, "three angles",
        "the kept output feeds the step"
    );
    let run = e.get(&id).unwrap().unwrap();
    assert_eq!(run.retry_of, "nightly@2026-11-24T09:00:00Z");
    assert_eq!(run.requested_by, "ops");
    assert_eq!(
        run.params.get("topic").map(String::as_str),
        Some("Autumn launch")
    );
    assert_eq!(run.trigger, "nightly");
    let a = &run.steps[0];
    assert_eq!(a.state, v1::StepState::Succeeded as i32);
    assert_eq!(a.output, "three angles");
    assert!(
        a.labels
            .contains(&"kept-from:nightly@2026-11-24T09:00:00Z".to_string()),
        "{:?}",
        a.labels
    );
    assert!(run.steps[1].labels.is_empty());
    assert_eq!(run.steps[2].state, v1::StepState::Waiting as i32);

    // The retry goes on to the end on the old steps.
    let fx = e.apply_result(ok(&b, "the post"), t(11)).unwrap();
    let c = one(&fx);
    assert_eq!(c.step_id, "c");
    e.apply_result(ok(&c, "announced"), t(12)).unwrap();
    assert_eq!(
        e.get(&id).unwrap().unwrap().state,
        v1::RunState::Succeeded as i32
    );

    // A retry of a run that succeeded, or of one still going, is refused.
    let err = e.retry_run(&id, false, "ops", t(13)).unwrap_err();
    assert!(matches!(err, EngineError::Precondition(_)), "{err}");
    e.start_run(start("live", "plain"), t(13)).unwrap();
    let err = e.retry_run("live", false, "ops", t(13)).unwrap_err();
    assert!(matches!(err, EngineError::Precondition(_)), "{err}");
    assert!(err.to_string().contains("not ended"), "{err}");

    // From the start: every step again; the next free number.
    let (id2, fx) = e
        .retry_run("nightly@2026-11-24T09:00:00Z", true, "ops", t(20))
        .unwrap();
    assert_eq!(id2, "nightly@2026-11-24T09:00:00Z~retry2");
    assert_eq!(one(&fx).step_id, "a");
    let run = e.get(&id2).unwrap().unwrap();
    assert!(run.steps.iter().all(|s| s.labels.is_empty()));
    // A retry of a retry counts on the first run's number.
    e.cancel(&id2, "enough", t(21)).unwrap();
    let (id3, _) = e.retry_run(&id2, false, "ops", t(22)).unwrap();
    assert_eq!(id3, "nightly@2026-11-24T09:00:00Z~retry3");
    assert_eq!(
        e.get(&id3).unwrap().unwrap().retry_of,
        "nightly@2026-11-24T09:00:00Z~retry2"
    );
}

#[test]
fn a_cancelled_run_is_retried_and_the_retry_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    {
        let store: Arc<dyn KvStore> = Arc::new(SledStore::open(data.path()).unwrap());
        let mut e = Engine::new(st.clone(), store.clone(), Limits::default());
        e.recover(t(0)).unwrap();
        let fx = e.start_run(start("r1", "plain"), t(0)).unwrap();
        e.apply_result(ok(&one(&fx), "research"), t(1)).unwrap();
        let (_, fx) = e.cancel("r1", "wrong brief", t(2)).unwrap();
        assert!(fx.run_failed.is_empty(), "a cancelled run is no alert");
        let (id, _) = e.retry_run("r1", false, "ops", t(3)).unwrap();
        assert_eq!(id, "r1~retry1");
        store.flush().unwrap();
    }
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(data.path()).unwrap());
    let mut e = Engine::new(st, store, Limits::default());
    let fx = e.recover(t(5)).unwrap();
    let b = one(&fx);
    assert_eq!((b.run_id.as_str(), b.step_id.as_str()), ("r1~retry1", "b"));

    // A retry may also come as a `StartRun` naming the run it retries.
    let fx = e
        .start_run(
            v1::StartRun {
                run_id: "r1-again".into(),
                retry_of: "r1".into(),
                retry_from_start: true,
                requested_by: "dashboard:ops".into(),
                ..Default::default()
            },
            t(6),
        )
        .unwrap();
    assert_eq!(one(&fx).step_id, "a");
    let run = e.get("r1-again").unwrap().unwrap();
    assert_eq!(
        (run.retry_of.as_str(), run.workflow.as_str()),
        ("r1", "plain")
    );
    assert_eq!(run.requested_by, "dashboard:ops");
}

#[test]
fn a_failure_with_a_failure_path_raises_no_alert_and_unknown_runs_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(dir.path()), store, Limits::default());
    e.recover(t(0)).unwrap();
    let fx = e.start_run(start("g1", "guarded"), t(0)).unwrap();
    let fx = e.apply_result(failed(&one(&fx), "no data"), t(1)).unwrap();
    let on_failure = one(&fx);
    let fx = e.apply_result(ok(&on_failure, "told"), t(2)).unwrap();
    assert_eq!(
        e.get("g1").unwrap().unwrap().state,
        v1::RunState::Failed as i32
    );
    assert!(fx.run_failed.is_empty(), "{:?}", fx.run_failed);

    // A run of an unknown workflow fails at once, with nothing to handle it.
    let fx = e.start_run(start("u1", "no-such-workflow"), t(3)).unwrap();
    assert_eq!(fx.run_failed.len(), 1);
    assert_eq!(fx.run_failed[0].step_id, "");

    let err = e.retry_run("zz", false, "ops", t(4)).unwrap_err();
    assert!(matches!(err, EngineError::NotFound(_)), "{err}");
}
