//! A changed studio taken by the [`Core`]: the progress metrics' specs (target, type,
//! tracker role, `on_off_target`), the watched predicates, the roles health reports on
//! and the workflows' deliverables are replaced; series and watch states are kept.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use concierto_core::config::Studio;
use concierto_core::store::StoreError;

use super::{Core, Outcome};
use crate::series::Series;
use crate::spec::{self, MetricSpec};
use crate::threshold;

/// What a studio change changed in the tracker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricChanges {
    /// Progress metrics added.
    pub added: Vec<String>,
    /// Progress metrics removed (their series stay, as sampled metrics).
    pub removed: Vec<String>,
    /// Progress metrics whose target, type or tracker changed.
    pub changed: Vec<String>,
    /// Watches (by id) added, removed or on another predicate.
    pub watches: Vec<String>,
}

impl MetricChanges {
    /// True when nothing the tracker uses changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.watches.is_empty()
    }
}

impl fmt::Display for MetricChanges {
    /// `added [a], removed [b], changed [c], watches [d]` (empty lists left out), or
    /// `unchanged`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("unchanged");
        }
        let mut first = true;
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
            ("watches", &self.watches),
        ] {
            if names.is_empty() {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{what} [{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl Core {
    /// Takes `studio` at `now`: every progress metric gets its new spec (a metric
    /// added starts an empty series, or takes up the one it had as a sampled metric;
    /// one removed goes on as a sampled metric, as after a restart; a changed period
    /// rolls its windows up again from its points), the watches are the new studio's
    /// (a watch keeps its stored state by id, so an episode under way is not fired
    /// again; a changed predicate is judged from this evaluation on), health reports
    /// on the new roles and runs count the new deliverables. Then every watch is
    /// evaluated, as on a tick. Returns the writes and crossings, and what changed.
    ///
    /// Nothing is changed when it fails (a new watch's stored state is unreadable).
    pub fn studio_changed(
        &mut self,
        studio: &Studio,
        now: DateTime<Utc>,
    ) -> Result<(Outcome, MetricChanges), StoreError> {
        let watches = spec::watches(studio);
        let mut loaded = Vec::new();
        for w in &watches {
            if !self.states.contains_key(&w.id) {
                loaded.push((w.id.clone(), threshold::load(self.store.as_ref(), &w.id)?));
            }
        }
        let mut changes = MetricChanges::default();
        let mut out = Outcome::default();

        let specs = spec::progress_specs(studio);
        let new_names: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let old_goals: Vec<String> = self
            .order
            .iter()
            .filter(|n| self.series.get(*n).is_some_and(|s| s.spec.goal.is_some()))
            .cloned()
            .collect();
        for name in &old_goals {
            if new_names.contains(name.as_str()) {
                continue;
            }
            changes.removed.push(name.clone());
            if let Some(s) = self.series.get_mut(name) {
                let sampled = MetricSpec::sampled(name, "");
                out.ops.extend(s.repartition(sampled.period));
                s.spec = sampled;
            }
        }
        for new in &specs {
            match self.series.get_mut(&new.name) {
                Some(s) if s.spec == *new => {}
                Some(s) => {
                    if s.spec.goal.is_some() {
                        changes.changed.push(new.name.clone());
                    } else {
                        changes.added.push(new.name.clone());
                    }
                    out.ops.extend(s.repartition(new.period));
                    s.spec = new.clone();
                }
                None => {
                    changes.added.push(new.name.clone());
                    self.series
                        .insert(new.name.clone(), Series::new(new.clone()));
                }
            }
        }
        // Progress metrics first (file order), then the others by name.
        let mut others: Vec<String> = self
            .series
            .keys()
            .filter(|n| !new_names.contains(n.as_str()))
            .cloned()
            .collect();
        others.sort();
        self.order = specs.iter().map(|s| s.name.clone()).chain(others).collect();

        for w in &watches {
            if !self.watches.iter().any(|o| o == w) {
                changes.watches.push(w.id.clone());
            }
        }
        for o in &self.watches {
            if !watches.iter().any(|w| w.id == o.id) {
                changes.watches.push(o.id.clone());
            }
        }
        self.states.extend(loaded);
        self.watches = watches;
        self.health
            .set_roles(studio.roles.keys().cloned().collect());
        self.deliverables = studio
            .publishing
            .deliverables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.extend(self.evaluate(None, now, now));
        Ok((out, changes))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use concierto_core::config::Goal;
    use concierto_core::grammar::{Improvement, Period, Target};
    use concierto_core::store::{KvStore, SledStore};
    use concierto_proto::v1::MetricSample;

    use super::*;
    use crate::TrackerOptions;
    use crate::series::TREE;
    use crate::spec::{DAILY_OUTPUT, PATTERN_RECOGNITION};

    fn studio() -> Studio {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/studio/concierto.yaml");
        concierto_core::config::load_with_env(&path, Vec::new()).unwrap()
    }

    fn sample(metric: &str, value: f64, at: DateTime<Utc>) -> MetricSample {
        MetricSample {
            metric: metric.into(),
            value,
            at: Some(crate::health::to_ts(at)),
            ..Default::default()
        }
    }

    fn utc(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
    }

    fn view(c: &Core, name: &str, now: DateTime<Utc>) -> super::super::MetricView {
        c.views(now)
            .into_iter()
            .find(|v| v.spec.name == name)
            .unwrap()
    }

    #[test]
    fn a_lower_target_is_met_at_once_and_the_off_target_watch_leaves_on_the_new_predicate() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let dyn_store: Arc<dyn KvStore> = store.clone();
        let mut c = Core::load(&studio(), dyn_store, TrackerOptions::default()).unwrap();
        let out = c
            .sample(&sample(DAILY_OUTPUT, 3.0, utc(10, 9)), utc(10, 9))
            .unwrap();
        store.apply(TREE, out.ops).unwrap();
        // The next day, 3 pieces are off the target of 10.
        let out = c.tick(utc(11, 0), false).unwrap();
        assert_eq!(out.crossings.len(), 1);
        assert_eq!(out.crossings[0].predicate, "daily_output < 10");
        assert!(c.watch_state("target:daily_output").unwrap().inside);
        let out = c
            .sample(&sample(DAILY_OUTPUT, 3.0, utc(11, 9)), utc(11, 9))
            .unwrap();
        store.apply(TREE, out.ops).unwrap();
        assert_eq!(view(&c, DAILY_OUTPUT, utc(11, 9)).on_target, Some(false));

        let mut changed = studio();
        let m = changed
            .progress_metrics
            .iter_mut()
            .find(|m| m.name == DAILY_OUTPUT)
            .unwrap();
        m.goal = Goal::Target("2".parse::<Target>().unwrap());
        m.goal_text = "2".into();
        m.tracker = "content-creator".into();
        let (out, changes) = c.studio_changed(&changed, utc(11, 9)).unwrap();
        assert_eq!(changes.changed, vec![DAILY_OUTPUT.to_string()]);
        assert_eq!(changes.watches, vec!["target:daily_output".to_string()]);
        assert_eq!(
            changes.to_string(),
            "changed [daily_output], watches [target:daily_output]"
        );
        // The series is kept: today's 3 meet the new target of 2.
        let v = view(&c, DAILY_OUTPUT, utc(11, 9));
        assert_eq!((v.current, v.on_target), (Some(3.0), Some(true)));
        assert_eq!(
            (v.spec.target.as_str(), v.spec.tracker.as_str()),
            ("2", "content-creator")
        );
        // Yesterday's 3 are not below 2: the episode ends, on the new predicate.
        assert_eq!(out.crossings.len(), 1);
        let x = &out.crossings[0];
        assert_eq!(
            (x.predicate.as_str(), x.entered, x.value),
            ("daily_output < 2", false, 3.0)
        );
        // Nothing changed: nothing to tell.
        let (out, changes) = c.studio_changed(&changed, utc(11, 9)).unwrap();
        assert!(changes.is_empty() && out.crossings.is_empty());
    }

    #[test]
    fn a_goal_on_another_period_rolls_its_windows_up_again_and_a_removed_metric_keeps_its_series() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let dyn_store: Arc<dyn KvStore> = store.clone();
        let mut c = Core::load(&studio(), dyn_store.clone(), TrackerOptions::default()).unwrap();
        // Weeks of 2 and 9 March; February none.
        for (d, v) in [(3, 0.5), (10, 0.6), (11, 0.7)] {
            let out = c
                .sample(&sample(PATTERN_RECOGNITION, v, utc(d, 9)), utc(11, 10))
                .unwrap();
            store.apply(TREE, out.ops).unwrap();
        }
        assert_eq!(c.series[PATTERN_RECOGNITION].windows.len(), 2, "two weeks");

        let mut changed = studio();
        let m = changed
            .progress_metrics
            .iter_mut()
            .find(|m| m.name == PATTERN_RECOGNITION)
            .unwrap();
        m.goal = Goal::Improvement("5% monthly".parse::<Improvement>().unwrap());
        m.goal_text = "5% monthly".into();
        changed.progress_metrics.retain(|m| m.name != DAILY_OUTPUT);
        let (out, changes) = c.studio_changed(&changed, utc(11, 10)).unwrap();
        store.apply(TREE, out.ops).unwrap();
        assert_eq!(changes.removed, vec![DAILY_OUTPUT.to_string()]);
        assert_eq!(changes.changed, vec![PATTERN_RECOGNITION.to_string()]);
        let s = &c.series[PATTERN_RECOGNITION];
        assert_eq!(s.spec.period, Period::Monthly);
        assert_eq!(s.windows.len(), 1, "one month");
        assert_eq!(s.windows.values().next().unwrap().count, 3);
        // The store holds the same as memory: a reload reads one monthly window.
        let again = Series::load(store.as_ref(), s.spec.clone()).unwrap();
        assert_eq!(again.windows, s.windows);
        // The removed metric is listed after the progress metrics, without a goal.
        let views = c.views(utc(11, 10));
        let last = views.last().unwrap();
        assert_eq!(
            (last.spec.name.as_str(), last.spec.goal),
            (DAILY_OUTPUT, None)
        );
        assert!(c.watches().iter().all(|w| w.id != "target:daily_output"));
    }
}
