//! Threshold crossings with hysteresis. A watch is *inside* once its predicate
//! holds; it enters (`entered: true`) the first time it holds, and leaves
//! (`entered: false`) only once the value is beyond the threshold by the band
//! (a share of the threshold, 10 % by default): for `engagement_rate < 0.05`
//! a value must reach 0.055 to leave, so 0.048, 0.052, 0.049 stay one episode.
//! `==` and `!=` have no band. The state of each watch is kept in the store
//! (key `t/<watch id>`), so a restart neither fires again nor forgets a fire.

use chrono::{DateTime, Utc};
use concierto_core::grammar::Comparison;
use concierto_core::store::{KvStore, Op, StoreError};
use serde::{Deserialize, Serialize};

use crate::series::TREE;
use crate::spec::Watch;

/// What the store keeps of a watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    /// The predicate holds (entered and not yet left).
    pub inside: bool,
    /// When it last entered or left (ms).
    pub since_ms: i64,
    /// The value it last entered or left on.
    pub value: f64,
    /// Episodes entered so far.
    pub entered: u64,
}

/// A change of a watch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Crossing {
    /// The predicate started to hold.
    Entered,
    /// The value moved beyond the band: the predicate stopped holding.
    Left,
}

/// The width of the band for `threshold`: `ratio × |threshold|`, and at least
/// `ratio / 100` so a threshold of 0 still has one.
pub fn band(threshold: f64, ratio: f64) -> f64 {
    (threshold * ratio).abs().max(ratio.abs() / 100.0)
}

/// Whether `value` is beyond `threshold` by `band`, on the side where `op` does not hold.
fn beyond(op: Comparison, threshold: f64, band: f64, value: f64) -> bool {
    match op {
        Comparison::Lt | Comparison::Le => value >= threshold + band,
        Comparison::Gt | Comparison::Ge => value <= threshold - band,
        Comparison::Eq | Comparison::Ne => true,
    }
}

/// Moves `state` for a new `value`; returns the crossing, if any.
pub fn step(
    watch: &Watch,
    state: &mut WatchState,
    value: f64,
    ratio: f64,
    now: DateTime<Utc>,
) -> Option<Crossing> {
    if !value.is_finite() {
        return None;
    }
    let crossing = if !state.inside && watch.holds(value) {
        state.entered += 1;
        Crossing::Entered
    } else if state.inside
        && !watch.holds(value)
        && beyond(
            watch.op,
            watch.threshold,
            band(watch.threshold, ratio),
            value,
        )
    {
        Crossing::Left
    } else {
        return None;
    };
    state.inside = crossing == Crossing::Entered;
    state.since_ms = now.timestamp_millis();
    state.value = value;
    Some(crossing)
}

fn key(id: &str) -> Vec<u8> {
    format!("t/{id}").into_bytes()
}

/// The stored state of watch `id` (the default when there is none).
pub fn load(store: &dyn KvStore, id: &str) -> Result<WatchState, StoreError> {
    match store.get(TREE, &key(id))? {
        None => Ok(WatchState::default()),
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            StoreError::from_message(format!(
                "the state of threshold watch {id} does not decode ({e}); delete key \"t/{id}\" of store tree \"{TREE}\" to start it afresh"
            ))
        }),
    }
}

/// The store write that keeps `state`.
pub fn save(id: &str, state: &WatchState) -> Op {
    Op::Put(key(id), serde_json::to_vec(state).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::WatchSource;
    use chrono::TimeZone;
    use concierto_core::clock::{Clock, ManualClock};
    use concierto_core::store::SledStore;

    fn engagement() -> Watch {
        Watch {
            id: "trigger:on_performance_threshold".into(),
            metric: "engagement_rate".into(),
            op: Comparison::Lt,
            threshold: 0.05,
            predicate: "engagement_rate < 0.05".into(),
            source: WatchSource::Trigger("on_performance_threshold".into()),
        }
    }

    fn run(
        watch: &Watch,
        state: &mut WatchState,
        clock: &ManualClock,
        values: &[f64],
    ) -> Vec<(f64, Crossing)> {
        let mut out = Vec::new();
        for v in values {
            clock.advance(std::time::Duration::from_secs(60));
            if let Some(c) = step(watch, state, *v, 0.10, clock.now()) {
                out.push((*v, c));
            }
        }
        out
    }

    #[test]
    fn a_noisy_value_enters_once_and_leaves_only_beyond_the_band() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap());
        let w = engagement();
        let mut s = WatchState::default();
        let got = run(
            &w,
            &mut s,
            &clock,
            &[0.07, 0.06, 0.045, 0.04, 0.048, 0.052, 0.03],
        );
        assert_eq!(got, vec![(0.045, Crossing::Entered)]);
        assert!(s.inside);
        let got = run(&w, &mut s, &clock, &[0.054, 0.07, 0.06, 0.04]);
        assert_eq!(got, vec![(0.07, Crossing::Left), (0.04, Crossing::Entered)]);
        assert_eq!(s.entered, 2);
        assert_eq!(s.since_ms, clock.now().timestamp_millis());
        assert_eq!(run(&w, &mut s, &clock, &[f64::NAN]), vec![]);
    }

    #[test]
    fn a_greater_than_watch_leaves_below_the_band_and_zero_band_is_plain() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap());
        let mut w = engagement();
        w.op = Comparison::Ge;
        w.threshold = 7200.0;
        let mut s = WatchState::default();
        let got = run(
            &w,
            &mut s,
            &clock,
            &[3600.0, 7200.0, 7000.0, 6480.0, 6400.0],
        );
        assert_eq!(
            got,
            vec![(7200.0, Crossing::Entered), (6480.0, Crossing::Left)]
        );
        let mut s = WatchState::default();
        let got: Vec<_> = [0.04, 0.05, 0.04]
            .iter()
            .filter_map(|v| step(&engagement(), &mut s, *v, 0.0, clock.now()))
            .collect();
        assert_eq!(
            got,
            vec![Crossing::Entered, Crossing::Left, Crossing::Entered]
        );
    }

    #[test]
    fn a_zero_threshold_still_has_a_band() {
        assert_eq!(band(0.0, 0.1), 0.001);
        assert_eq!(band(0.05, 0.1), 0.005000000000000001);
        assert_eq!(band(-2.0, 0.1), 0.2);
        assert_eq!(band(0.0, 0.0), 0.0);
    }

    #[test]
    fn the_state_is_kept_in_the_store() {
        let store = SledStore::temporary().unwrap();
        let w = engagement();
        assert_eq!(load(&store, &w.id).unwrap(), WatchState::default());
        let mut s = WatchState::default();
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        step(&w, &mut s, 0.01, 0.1, now);
        store.apply(TREE, vec![save(&w.id, &s)]).unwrap();
        assert_eq!(load(&store, &w.id).unwrap(), s);
        store.put(TREE, b"t/broken", b"{").unwrap();
        let e = load(&store, "broken").unwrap_err().to_string();
        assert!(e.contains("delete key"), "{e}");
    }
}
