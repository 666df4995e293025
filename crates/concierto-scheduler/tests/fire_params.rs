//! What a fire carries in `StartRun.params`: the trigger, the fire time, the
//! previous scheduled fire (the "since last run" window), the content item or
//! the metric crossing. Computed on the example studio's seed triggers.

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::Studio;
use concierto_proto::v1::{Comparison, ContentItem, ThresholdCrossed};
use concierto_scheduler::runs::{
    MAX_FIRE_PARAM_BYTES, content_starts, manual_start, previous_fire, scheduled_start,
    threshold_starts, timestamp,
};

fn studio() -> Studio {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    concierto_core::config::load_with_env(&path, Vec::new()).expect("the example studio loads")
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

#[test]
fn a_scheduled_fire_carries_its_window() {
    let studio = studio();
    let interval = studio
        .triggers
        .iter()
        .find(|t| t.name == "continuous_optimization")
        .unwrap();
    let fire = utc(2026, 3, 10, 12, 0);
    let start = scheduled_start(&studio, interval, fire);
    assert_eq!(start.params["trigger"], "continuous_optimization");
    assert_eq!(start.params["fire_time"], "2026-03-10T12:00:00Z");
    assert_eq!(start.params["previous_fire_time"], "2026-03-10T06:00:00Z");

    // A daily 09:00 Europe/Madrid schedule across the March DST change: the
    // previous fire is the day before at 09:00 local time (08:00 UTC in winter).
    let daily = studio
        .triggers
        .iter()
        .find(|t| t.name == "daily_content_generation")
        .unwrap();
    let start = scheduled_start(&studio, daily, utc(2026, 3, 30, 7, 0));
    assert_eq!(start.params["previous_fire_time"], "2026-03-29T07:00:00Z");
    let start = scheduled_start(&studio, daily, utc(2026, 3, 29, 7, 0));
    assert_eq!(start.params["previous_fire_time"], "2026-03-28T08:00:00Z");

    // Weekly: seven days back.
    let weekly = studio
        .triggers
        .iter()
        .find(|t| t.name == "weekly_trend_analysis")
        .unwrap();
    let now = utc(2026, 3, 18, 15, 30);
    let prev = previous_fire(weekly, now).expect("a weekly trigger fired before");
    assert!(
        now - prev <= chrono::Duration::days(7) && prev < now,
        "{prev}"
    );

    // By hand: fire_time is now; the previous fire is the last scheduled one.
    let start = manual_start(
        &studio,
        interval,
        utc(2026, 3, 10, 13, 45),
        concierto_proto::v1::Priority::Unspecified,
    );
    assert_eq!(start.params["fire_time"], "2026-03-10T13:45:00Z");
    assert_eq!(start.params["previous_fire_time"], "2026-03-10T12:00:00Z");
}

#[test]
fn events_carry_the_item_and_the_crossing() {
    let studio = studio();
    let item = ContentItem {
        item_id: "sha256:ab".into(),
        source: "siteinspire".into(),
        title: "Paper & ink ".repeat(400),
        url: "https://siteinspire.example/a".into(),
        ingested_at: Some(timestamp(utc(2026, 3, 10, 9, 0))),
        ..Default::default()
    };
    let starts = content_starts(&studio, &item, utc(2026, 3, 10, 9, 1));
    assert!(!starts.is_empty());
    let p = &starts[0].params;
    assert_eq!(p["item_id"], "sha256:ab");
    assert_eq!(p["item_source"], "siteinspire");
    assert_eq!(p["item_url"], "https://siteinspire.example/a");
    assert_eq!(
        p["item_title"].len(),
        MAX_FIRE_PARAM_BYTES,
        "a long title is cut"
    );
    assert_eq!(p["fire_time"], "2026-03-10T09:00:00Z");
    assert!(
        !p.contains_key("previous_fire_time"),
        "events have no schedule"
    );

    let crossed = ThresholdCrossed {
        metric: "engagement_rate".into(),
        predicate: "engagement_rate < 0.05".into(),
        comparison: Comparison::Lt as i32,
        threshold: 0.05,
        value: 0.031,
        entered: true,
        at: Some(timestamp(utc(2026, 3, 10, 12, 0))),
    };
    let starts = threshold_starts(&studio, &crossed, utc(2026, 3, 10, 12, 1));
    assert_eq!(starts.len(), 1);
    let p = &starts[0].params;
    assert_eq!(p["metric"], "engagement_rate");
    assert_eq!(p["value"], "0.031");
    assert_eq!(p["predicate"], "engagement_rate < 0.05");
    assert_eq!(p["crossed_at"], "2026-03-10T12:00:00Z");
    assert_eq!(p["trigger"], "on_performance_threshold");
}
