//! Series in the store: per metric, one rollup per minute (the points, kept for
//! the retention, 30 days by default) and one per window of the metric's
//! period (day, week, month; kept for the rollup retention, 400 days by
//! default, so month-over-month still compares once the points are gone).
//!
//! Keys in tree [`TREE`]: `m/<metric>/<start ms, 20 digits>` for minutes,
//! `w/<metric>/<start ms>` for windows; values are JSON [`Rollup`]s.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::grammar::Period;
use concierto_core::store::{KvStore, Op, StoreError};
use serde::{Deserialize, Serialize};

use crate::spec::{Aggregation, MetricSpec, previous_window, window_start};

/// The store tree the tracker keeps everything in.
pub const TREE: &str = "tracker";
/// Length of one point (minute rollup), in milliseconds.
pub const POINT_MS: i64 = 60_000;

/// Observations of one interval, added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    /// Start of the interval (ms since the epoch).
    pub start_ms: i64,
    /// Sum of the values.
    pub sum: f64,
    /// Sum of value × weight.
    pub wsum: f64,
    /// Sum of the weights.
    pub weight: f64,
    /// How many observations.
    pub count: u64,
    /// The latest value and when it was observed.
    pub last: f64,
    /// When the latest value was observed (ms).
    pub last_ms: i64,
}

impl Rollup {
    /// Adds one observation of `value` with `weight` at `at_ms`.
    pub fn add(&mut self, value: f64, weight: f64, at_ms: i64) {
        self.sum += value;
        self.wsum += value * weight;
        self.weight += weight;
        self.count += 1;
        if at_ms >= self.last_ms || self.count == 1 {
            self.last = value;
            self.last_ms = at_ms;
        }
    }

    /// Adds another rollup's observations.
    pub fn merge(&mut self, other: &Rollup) {
        self.sum += other.sum;
        self.wsum += other.wsum;
        self.weight += other.weight;
        if self.count == 0 || other.last_ms >= self.last_ms {
            self.last = other.last;
            self.last_ms = other.last_ms;
        }
        self.count += other.count;
    }

    /// The value under `agg`; `None` when there is nothing to average.
    pub fn value(&self, agg: Aggregation) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        match agg {
            Aggregation::Sum => Some(self.sum),
            Aggregation::Mean if self.weight > 0.0 => Some(self.wsum / self.weight),
            Aggregation::Mean => None,
            Aggregation::Last => Some(self.last),
        }
    }
}

/// One metric's points and window rollups, in memory and in the store.
#[derive(Debug, Clone)]
pub struct Series {
    /// What it is.
    pub spec: MetricSpec,
    /// Minute rollups by start.
    pub points: BTreeMap<i64, Rollup>,
    /// Window rollups by start.
    pub windows: BTreeMap<i64, Rollup>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn key(kind: char, metric: &str, start_ms: i64) -> Vec<u8> {
    format!("{kind}/{metric}/{start_ms:020}").into_bytes()
}

fn decode(bytes: &[u8], what: &str) -> Result<Rollup, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::from_message(format!("decoding the {what}: {e}")))
}

fn encode(r: &Rollup) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

impl Series {
    /// An empty series.
    pub fn new(spec: MetricSpec) -> Self {
        Series {
            spec,
            points: BTreeMap::new(),
            windows: BTreeMap::new(),
        }
    }

    /// Loads the series of `spec` from `store`.
    pub fn load(store: &dyn KvStore, spec: MetricSpec) -> Result<Self, StoreError> {
        let mut s = Series::new(spec);
        for (kind, map) in [('m', &mut s.points), ('w', &mut s.windows)] {
            let prefix = format!("{kind}/{}/", s.spec.name);
            for (k, v) in store.scan_prefix(TREE, prefix.as_bytes())? {
                let r = decode(&v, &String::from_utf8_lossy(&k))?;
                map.insert(r.start_ms, r);
            }
        }
        Ok(s)
    }

    /// The names of every series in `store`.
    pub fn stored_names(store: &dyn KvStore) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = Vec::new();
        for (k, _) in store.scan_prefix(TREE, b"w/")? {
            let k = String::from_utf8_lossy(&k);
            if let Some(name) = k
                .strip_prefix("w/")
                .and_then(|rest| rest.rsplit_once('/'))
                .map(|(n, _)| n.to_string())
                && names.last() != Some(&name)
            {
                names.push(name);
            }
        }
        names.dedup();
        Ok(names)
    }

    /// Adds an observation and returns the store writes that keep it.
    pub fn record(&mut self, value: f64, weight: f64, t: DateTime<Utc>) -> Vec<Op> {
        let at_ms = ms(t);
        let point_start = at_ms.div_euclid(POINT_MS) * POINT_MS;
        let window = ms(window_start(self.spec.period, t));
        let p = self.points.entry(point_start).or_insert(Rollup {
            start_ms: point_start,
            ..Default::default()
        });
        p.add(value, weight, at_ms);
        let p = *p;
        let w = self.windows.entry(window).or_insert(Rollup {
            start_ms: window,
            ..Default::default()
        });
        w.add(value, weight, at_ms);
        let w = *w;
        vec![
            Op::Put(key('m', &self.spec.name, point_start), encode(&p)),
            Op::Put(key('w', &self.spec.name, window), encode(&w)),
        ]
    }

    /// Drops points older than `points_from` and windows that started before
    /// `windows_from`; returns the store deletes.
    pub fn prune(&mut self, points_from: DateTime<Utc>, windows_from: DateTime<Utc>) -> Vec<Op> {
        let mut ops = Vec::new();
        let keep_points = self.points.split_off(&ms(points_from));
        for start in std::mem::replace(&mut self.points, keep_points).keys() {
            ops.push(Op::Delete(key('m', &self.spec.name, *start)));
        }
        let keep_windows = self.windows.split_off(&ms(windows_from));
        for start in std::mem::replace(&mut self.windows, keep_windows).keys() {
            ops.push(Op::Delete(key('w', &self.spec.name, *start)));
        }
        ops
    }

    /// Rolls the series up by `period` instead (its goal's period changed): the window
    /// rollups are rebuilt from the points, so windows older than the oldest point are
    /// dropped. Returns the store writes (the old windows deleted, the new ones put).
    pub fn repartition(&mut self, period: Period) -> Vec<Op> {
        if period == self.spec.period {
            return Vec::new();
        }
        let mut ops: Vec<Op> = self
            .windows
            .keys()
            .map(|start| Op::Delete(key('w', &self.spec.name, *start)))
            .collect();
        let mut windows: BTreeMap<i64, Rollup> = BTreeMap::new();
        for p in self.points.values() {
            let start = ms(window_start(period, at(p.start_ms)));
            windows
                .entry(start)
                .or_insert(Rollup {
                    start_ms: start,
                    ..Default::default()
                })
                .merge(p);
        }
        for w in windows.values() {
            ops.push(Op::Put(key('w', &self.spec.name, w.start_ms), encode(w)));
        }
        self.windows = windows;
        self.spec.period = period;
        ops
    }

    /// The window holding `now` and the one before it.
    fn window_pair(&self, now: DateTime<Utc>) -> (Option<&Rollup>, Option<&Rollup>) {
        let cur = window_start(self.spec.period, now);
        let prev = previous_window(self.spec.period, cur);
        (self.windows.get(&ms(cur)), self.windows.get(&ms(prev)))
    }

    /// The value shown as current: the window holding `now` so far (a total for
    /// a count; for a mean, the previous window's while this one has nothing
    /// yet); the latest observation for a sampled level.
    pub fn current(&self, now: DateTime<Utc>) -> Option<f64> {
        let agg = self.spec.aggregation;
        match agg {
            Aggregation::Last => self.points.values().next_back().map(|p| p.last),
            Aggregation::Sum => {
                let (cur, _) = self.window_pair(now);
                Some(cur.and_then(|r| r.value(agg)).unwrap_or(0.0))
            }
            Aggregation::Mean => {
                let (cur, prev) = self.window_pair(now);
                cur.and_then(|r| r.value(agg))
                    .or_else(|| prev.and_then(|r| r.value(agg)))
            }
        }
    }

    /// The value thresholds are judged on: a count's last complete window (a
    /// day's output is judged once the day is over), otherwise [`Series::current`].
    pub fn judged(&self, now: DateTime<Utc>) -> Option<f64> {
        match self.spec.aggregation {
            Aggregation::Sum => {
                let (_, prev) = self.window_pair(now);
                prev.and_then(|r| r.value(Aggregation::Sum))
            }
            _ => self.current(now),
        }
    }

    /// This window against the previous one, as a fraction (0.05 = +5 %):
    /// `(this − previous) / |previous|`. `None` while either has no value or
    /// the previous one is zero.
    pub fn improvement(&self, now: DateTime<Utc>) -> Option<f64> {
        let agg = self.spec.aggregation;
        let (cur, prev) = self.window_pair(now);
        let (c, p) = (cur?.value(agg)?, prev?.value(agg)?);
        if p == 0.0 {
            return None;
        }
        Some((c - p) / p.abs())
    }

    /// Points from `from` on, merged into at most `max` buckets of equal
    /// length; each point is at its bucket's start, valued by the metric's
    /// aggregation.
    pub fn points_since(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max: usize,
    ) -> Vec<(DateTime<Utc>, f64)> {
        let (from_ms, to_ms) = (ms(from), ms(to).max(ms(from) + 1));
        let span = to_ms - from_ms;
        let max = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        let step = ((span + max - 1) / max).max(POINT_MS);
        let mut buckets: BTreeMap<i64, Rollup> = BTreeMap::new();
        let start = from_ms.div_euclid(POINT_MS) * POINT_MS;
        for (s, r) in self.points.range(start..=to_ms) {
            let b = from_ms + ((s - from_ms).max(0) / step) * step;
            let e = buckets.entry(b).or_insert(Rollup {
                start_ms: b,
                ..Default::default()
            });
            e.merge(r);
        }
        buckets
            .into_iter()
            .filter_map(|(b, r)| r.value(self.spec.aggregation).map(|v| (at(b), v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::MetricSpec;
    use concierto_core::grammar::Period;
    use concierto_core::store::SledStore;

    fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap()
    }

    fn spec(agg: Aggregation, period: Period) -> MetricSpec {
        let mut s = MetricSpec::sampled("m", "");
        s.aggregation = agg;
        s.period = period;
        s
    }

    #[test]
    fn a_count_is_the_days_total_and_is_judged_on_the_last_whole_day() {
        let mut s = Series::new(spec(Aggregation::Sum, Period::Daily));
        for h in [9, 10, 11] {
            s.record(1.0, 1.0, utc(10, h, 0));
        }
        assert_eq!(s.current(utc(10, 12, 0)), Some(3.0));
        assert_eq!(s.judged(utc(10, 12, 0)), None, "no whole day yet");
        assert_eq!(s.current(utc(11, 8, 0)), Some(0.0), "a new day starts at 0");
        assert_eq!(s.judged(utc(11, 8, 0)), Some(3.0));
    }

    #[test]
    fn a_mean_is_weighted_and_falls_back_to_the_previous_window() {
        let mut s = Series::new(spec(Aggregation::Mean, Period::Daily));
        // busy/(busy+idle) weighted by the heartbeat's length: 9 s of 10 busy, 1 s of 30.
        s.record(0.9, 10_000.0, utc(10, 9, 0));
        s.record(1.0 / 30.0, 30_000.0, utc(10, 9, 1));
        let v = s.current(utc(10, 10, 0)).unwrap();
        assert!((v - 10.0 / 40.0).abs() < 1e-9, "{v}");
        assert_eq!(s.current(utc(11, 1, 0)), Some(v));
    }

    #[test]
    fn improvement_compares_this_window_with_the_previous_one() {
        let mut s = Series::new(spec(Aggregation::Mean, Period::Weekly));
        // Week of 2 March, then week of 9 March.
        s.record(0.60, 1.0, utc(3, 9, 0));
        s.record(0.62, 1.0, utc(4, 9, 0));
        assert_eq!(s.improvement(utc(5, 0, 0)), None, "no previous week");
        s.record(0.66, 1.0, utc(10, 9, 0));
        let i = s.improvement(utc(11, 0, 0)).unwrap();
        assert!((i - (0.66 - 0.61) / 0.61).abs() < 1e-9, "{i}");
    }

    #[test]
    fn the_latest_sample_of_a_level_counts_and_points_are_downsampled() {
        let mut s = Series::new(spec(Aggregation::Last, Period::Daily));
        for m in 0..50 {
            s.record(f64::from(m), 1.0, utc(10, 9, m));
        }
        assert_eq!(s.current(utc(10, 10, 0)), Some(49.0));
        let all = s.points_since(utc(10, 9, 0), utc(10, 10, 0), 200);
        assert_eq!(all.len(), 50, "one point per minute");
        let few = s.points_since(utc(10, 9, 0), utc(10, 10, 0), 6);
        assert!(few.len() <= 6, "{few:?}");
        assert_eq!(few.last().map(|p| p.1), Some(49.0));
    }

    #[test]
    fn series_survive_a_reopen_and_pruning_deletes_old_rollups() {
        let dir = tempfile::tempdir().unwrap();
        let studio_spec = spec(Aggregation::Sum, Period::Daily);
        {
            let store = SledStore::open(dir.path()).unwrap();
            let mut s = Series::new(studio_spec.clone());
            let mut ops = s.record(2.0, 1.0, utc(1, 9, 0));
            ops.extend(s.record(5.0, 1.0, utc(10, 9, 0)));
            store.apply(TREE, ops).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let mut s = Series::load(&store, studio_spec).unwrap();
        assert_eq!(s.points.len(), 2);
        assert_eq!(s.current(utc(10, 12, 0)), Some(5.0));
        assert_eq!(Series::stored_names(&store).unwrap(), vec!["m".to_string()]);
        let ops = s.prune(utc(5, 0, 0), utc(5, 0, 0));
        assert_eq!(ops.len(), 2);
        store.apply(TREE, ops).unwrap();
        let s = Series::load(&store, s.spec.clone()).unwrap();
        assert_eq!(s.points.len(), 1);
        assert_eq!(s.windows.len(), 1);
    }
}
