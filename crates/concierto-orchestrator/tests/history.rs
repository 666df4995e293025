//! Run history in the orchestrator's state machine (controlled clock, real
//! sled store): runs listed from the time index with filters and cursors,
//! the index rebuilt at recovery, retention, short run and gate ids.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use concierto_core::store::{KvStore, Op, SledStore};
use concierto_orchestrator::{DecisionKind, Engine, EngineError, Limits};
use concierto_proto::v1;

const DAY: i64 = 24 * 3600;

fn ts(at: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    })
}

fn ids(r: &v1::ListRunsResponse) -> Vec<String> {
    r.runs.iter().map(|r| r.run_id.clone()).collect()
}

/// Every page of `req`, each `size` long.
fn all_pages(e: &Engine, req: v1::ListRunsRequest) -> Vec<String> {
    let mut out = Vec::new();
    let mut req = req;
    loop {
        let page = e.list(&req).unwrap();
        out.extend(ids(&page));
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
}

/// 30 runs a minute apart: every third fails at `b` (`failing-N`), the rest
/// succeed (`ok-N`), and one more is left running.
fn history(e: &mut Engine) {
    for i in 0..30i64 {
        let failing = i % 3 == 0;
        let id = if failing {
            format!("failing-{i:02}")
        } else {
            format!("ok-{i:02}")
        };
        let at = i * 60;
        let fx = e.start_run(start(&id, "plain"), t(at)).unwrap();
        let fx = e
            .apply_result(ok(&one(&fx), "research"), t(at + 1))
            .unwrap();
        if failing {
            e.apply_result(failed(&one(&fx), "quota exceeded"), t(at + 2))
                .unwrap();
            continue;
        }
        let fx = e.apply_result(ok(&one(&fx), "post"), t(at + 2)).unwrap();
        e.apply_result(ok(&one(&fx), "announced"), t(at + 3))
            .unwrap();
    }
    e.start_run(start("running-now", "plain"), t(30 * 60))
        .unwrap();
}

#[test]
fn runs_are_listed_newest_first_from_the_index_with_filters_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(dir.path()), store, Limits::default());
    e.recover(t(0)).unwrap();
    history(&mut e);

    let first = e
        .list(&v1::ListRunsRequest {
            page_size: 4,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&first), ["running-now", "ok-29", "ok-28", "failing-27"]);
    // The live run shows its live state.
    assert_eq!(first.runs[0].state, v1::RunState::Running as i32);
    assert!(!first.next_page_token.is_empty());

    // Pages by cursor cover every run once, in order.
    let every = all_pages(
        &e,
        v1::ListRunsRequest {
            page_size: 7,
            ..Default::default()
        },
    );
    assert_eq!(every.len(), 31);
    assert_eq!(every.iter().collect::<BTreeSet<_>>().len(), 31);
    assert_eq!(every.last().map(String::as_str), Some("failing-00"));

    // State, time and words.
    let failed = all_pages(
        &e,
        v1::ListRunsRequest {
            state: v1::RunState::Failed as i32,
            page_size: 3,
            ..Default::default()
        },
    );
    assert_eq!(failed.len(), 10);
    assert!(failed.iter().all(|id| id.starts_with("failing-")));
    let window = all_pages(
        &e,
        v1::ListRunsRequest {
            since: ts(t(10 * 60)),
            until: ts(t(15 * 60)),
            ..Default::default()
        },
    );
    assert_eq!(window, ["ok-14", "ok-13", "failing-12", "ok-11", "ok-10"]);
    let words = all_pages(
        &e,
        v1::ListRunsRequest {
            query: "QUOTA failing-2".into(),
            ..Default::default()
        },
    );
    assert_eq!(words, ["failing-27", "failing-24", "failing-21"]);
    let by_param = e
        .list(&v1::ListRunsRequest {
            query: "autumn".into(),
            page_size: 200,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_param.runs.len(), 31, "params are searched too");
    assert!(
        e.list(&v1::ListRunsRequest {
            workflow: "guarded".into(),
            ..Default::default()
        })
        .unwrap()
        .runs
        .is_empty()
    );

    // A token this server did not give is refused, not read as an offset.
    let err = e
        .list(&v1::ListRunsRequest {
            page_token: "50".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, EngineError::Invalid(_)), "{err}");
}

#[test]
fn the_index_is_rebuilt_at_recovery_for_a_store_written_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    {
        let store: Arc<dyn KvStore> = Arc::new(SledStore::open(data.path()).unwrap());
        let mut e = Engine::new(st.clone(), store.clone(), Limits::default());
        e.recover(t(0)).unwrap();
        history(&mut e);
        // As before the index existed: drop half its rows, add a stray one.
        let rows = store.scan_prefix("runs_by_time", b"").unwrap();
        let mut ops: Vec<Op> = rows
            .iter()
            .step_by(2)
            .map(|(k, _)| Op::Delete(k.clone()))
            .collect();
        ops.push(Op::Put(b"\0\0\0\0\0\0\0\x01gone".to_vec(), b"{}".to_vec()));
        store.apply("runs_by_time", ops).unwrap();
        store.flush().unwrap();
    }
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(data.path()).unwrap());
    let mut e = Engine::new(st, store, Limits::default());
    e.recover(t(3600)).unwrap();
    let every = all_pages(
        &e,
        v1::ListRunsRequest {
            page_size: 50,
            ..Default::default()
        },
    );
    assert_eq!(every.len(), 31, "{every:?}");
    assert_eq!(every[0], "running-now");
    assert!(!every.contains(&"gone".to_string()));
}

#[test]
fn retention_removes_old_ended_runs_with_their_gates_and_keeps_young_and_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let limits = Limits {
        retention: Some(Duration::from_secs(7 * DAY as u64)),
        ..Limits::default()
    };
    let mut e = Engine::new(studio(dir.path()), store.clone(), limits);
    e.recover(t(0)).unwrap();
    history(&mut e);
    // A gated run decided (its gate closed) on day 0.
    let fx = e.start_run(start("launch", "gated"), t(100)).unwrap();
    e.apply_result(labelled(&one(&fx), "copy", "campaign_launch"), t(101))
        .unwrap();
    let gate = e.resolve_gate("launch").unwrap();
    e.decide_gate(
        &gate,
        "creative_director",
        DecisionKind::Approve,
        "",
        t(102),
    )
    .unwrap();
    // A run waiting at a gate since day 0: live, never removed.
    let fx = e.start_run(start("waiting", "gated"), t(200)).unwrap();
    e.apply_result(labelled(&one(&fx), "copy", "campaign_launch"), t(201))
        .unwrap();
    // A young run, ended on day 5.
    let fx = e.start_run(start("young", "guarded"), t(5 * DAY)).unwrap();
    let fx = e
        .apply_result(failed(&one(&fx), "x"), t(5 * DAY + 1))
        .unwrap();
    e.apply_result(ok(&one(&fx), "told"), t(5 * DAY + 2))
        .unwrap();

    // Day 6: nothing is past the retention yet.
    e.tick(t(6 * DAY)).unwrap();
    assert!(e.get("ok-01").unwrap().is_some());

    // Day 8: day-0 runs are past it; the young one and the live one stay.
    e.tick(t(8 * DAY)).unwrap();
    for gone in ["ok-01", "failing-00", "ok-29", "launch"] {
        assert!(e.get(gone).unwrap().is_none(), "{gone} removed");
    }
    assert!(e.get("young").unwrap().is_some());
    assert_eq!(
        e.get("waiting").unwrap().unwrap().state,
        v1::RunState::WaitingGate as i32
    );
    assert!(e.resolve_gate("waiting").is_ok(), "its open gate stays");
    assert!(
        e.get_gate(&gate).unwrap().is_none(),
        "its gate went with it"
    );
    let gates = e.list_gates(&v1::ListGatesRequest::default()).unwrap();
    assert_eq!(
        gates.gates.len(),
        1,
        "only the open gate of `waiting` is left"
    );
    // `running-now` timed out on day 6: it changed since, so it stays too.
    let left: BTreeSet<String> = all_pages(&e, v1::ListRunsRequest::default())
        .into_iter()
        .collect();
    let want: BTreeSet<String> = ["young", "waiting", "running-now"].map(String::from).into();
    assert_eq!(left, want);
    assert_eq!(store.scan_prefix("runs_by_time", b"").unwrap().len(), 3);
}

#[test]
fn retention_works_through_a_long_history_a_bounded_batch_per_tick() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let limits = Limits {
        retention: Some(Duration::from_secs(DAY as u64)),
        ..Limits::default()
    };
    let mut e = Engine::new(studio(dir.path()), store.clone(), limits);
    e.recover(t(0)).unwrap();
    let n = concierto_orchestrator::PRUNE_PER_TICK + 100;
    for i in 0..n {
        // Unknown workflow: the run ends at once.
        e.start_run(start(&format!("x{i:04}"), "nope"), t(i as i64))
            .unwrap();
    }
    e.tick(t(3 * DAY)).unwrap();
    assert_eq!(
        store.scan_prefix("runs", b"").unwrap().len(),
        100,
        "one batch per tick"
    );
    e.tick(t(3 * DAY + 1)).unwrap();
    assert!(store.scan_prefix("runs", b"").unwrap().is_empty());
}

#[test]
fn short_ids_name_runs_and_gates_as_git_does() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(dir.path()), store, Limits::default());
    e.recover(t(0)).unwrap();
    e.start_run(start("nightly@2026-11-24T09:00:00Z", "plain"), t(0))
        .unwrap();
    e.start_run(start("nightly@2026-11-25T09:00:00Z", "plain"), t(1))
        .unwrap();
    let fx = e
        .start_run(start("launch@2026-11-24T10:00:00Z", "gated"), t(2))
        .unwrap();
    e.apply_result(labelled(&one(&fx), "copy", "campaign_launch"), t(3))
        .unwrap();

    assert_eq!(
        e.resolve_run("nightly@2026-11-25").unwrap(),
        "nightly@2026-11-25T09:00:00Z"
    );
    let err = e.resolve_run("nightly@").unwrap_err();
    assert!(matches!(err, EngineError::Ambiguous(_)), "{err}");
    assert!(
        err.to_string().contains("nightly@2026-11-24T09:00:00Z")
            && err.to_string().contains("nightly@2026-11-25T09:00:00Z"),
        "{err}"
    );
    assert!(matches!(
        e.resolve_run("weekly").unwrap_err(),
        EngineError::NotFound(_)
    ));

    // A gate: by its id, a unique prefix of it, or its run (or the run's prefix).
    let gate = "launch@2026-11-24T10:00:00Z/copy/creative_review/1";
    assert_eq!(e.resolve_gate(gate).unwrap(), gate);
    assert_eq!(e.resolve_gate("launch@2026-11-24T10:00:00Z").unwrap(), gate);
    assert_eq!(e.resolve_gate("launch").unwrap(), gate);
    assert_eq!(
        e.resolve_gate("launch@2026-11-24T10:00:00Z/co").unwrap(),
        gate
    );
    let err = e.resolve_gate("nightly@2026-11-24").unwrap_err();
    assert!(matches!(err, EngineError::NotFound(_)), "{err}");
}

#[test]
fn the_gate_list_gives_open_gates_first_then_closed_ones_newest_first_by_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(dir.path()), store, Limits::default());
    e.recover(t(0)).unwrap();
    let mut gates = Vec::new();
    for i in 0..6i64 {
        let id = format!("launch-{i}");
        let fx = e.start_run(start(&id, "gated"), t(i * 60)).unwrap();
        e.apply_result(
            labelled(&one(&fx), "copy", "campaign_launch"),
            t(i * 60 + 1),
        )
        .unwrap();
        gates.push(e.resolve_gate(&id).unwrap());
    }
    // The first three are decided; the last three stay open.
    for g in &gates[..3] {
        e.decide_gate(g, "creative_director", DecisionKind::Approve, "", t(1000))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut req = v1::ListGatesRequest {
        page_size: 2,
        ..Default::default()
    };
    loop {
        let page = e.list_gates(&req).unwrap();
        seen.extend(
            page.gates
                .iter()
                .filter_map(|g| g.request.as_ref().map(|r| r.run_id.clone())),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    assert_eq!(
        seen,
        [
            "launch-3", "launch-4", "launch-5", "launch-2", "launch-1", "launch-0"
        ]
    );
    let approved = e
        .list_gates(&v1::ListGatesRequest {
            state: v1::GateState::Approved as i32,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(approved.gates.len(), 3);
    let of_run = e
        .list_gates(&v1::ListGatesRequest {
            run_id: "launch-4".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(of_run.gates.len(), 1);
}
