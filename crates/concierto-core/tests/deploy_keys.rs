//! The studio keys a cluster deploy needs: `server.library_url` (where other
//! services reach the content library, apart from the address it binds) and
//! `demo_triggers: off` (the example's 30-second demo trigger left out), both
//! as the deploy files set them, through environment overrides.

use std::path::{Path, PathBuf};

use concierto_core::config::{Severity, check_with_env, load_with_env};

fn example_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/concierto.yaml")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn library_url_defaults_to_the_bind_address_reached_on_loopback() {
    let s = load_with_env(&example_file(), env(&[])).expect("example loads");
    assert_eq!(s.server.library_url, "http://127.0.0.1:8081");
    let s = load_with_env(
        &example_file(),
        env(&[("CONCIERTO__SERVER__LIBRARY_ADDR", "0.0.0.0:9081")]),
    )
    .expect("loads");
    assert_eq!(
        s.server.library_url, "http://127.0.0.1:9081",
        "an all-interfaces bind address is no peer address"
    );
    let s = load_with_env(
        &example_file(),
        env(&[("CONCIERTO__SERVER__LIBRARY_ADDR", "[::]:9081")]),
    )
    .expect("loads");
    assert_eq!(s.server.library_url, "http://[::1]:9081");
}

#[test]
fn library_url_names_the_peer_address_apart_from_the_bind_address() {
    let s = load_with_env(
        &example_file(),
        env(&[
            ("CONCIERTO__SERVER__LIBRARY_ADDR", "0.0.0.0:8081"),
            ("CONCIERTO__SERVER__LIBRARY_URL", "http://ingest:8081/"),
        ]),
    )
    .expect("loads");
    assert_eq!(s.server.library_addr, "0.0.0.0:8081");
    assert_eq!(s.server.library_url, "http://ingest:8081");
}

#[test]
fn a_library_url_that_is_no_http_base_url_is_an_error_naming_the_key() {
    for bad in [
        "ingest:8081",
        "ftp://ingest",
        "http://",
        "http://ingest:8081/api",
    ] {
        let checked = check_with_env(
            &example_file(),
            env(&[("CONCIERTO__SERVER__LIBRARY_URL", bad)]),
        );
        let errors: Vec<String> = checked
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        assert!(checked.studio.is_none(), "{bad}: accepted");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("server.library_url") && e.contains("http://ingest:8081")),
            "{bad}: {errors:?}"
        );
    }
}

#[test]
fn demo_triggers_off_leaves_the_demo_trigger_out_and_keeps_the_seeds() {
    let on = load_with_env(&example_file(), env(&[])).expect("loads");
    let names = |s: &concierto_core::config::Studio| -> Vec<String> {
        s.triggers.iter().map(|t| t.name.clone()).collect()
    };
    assert!(
        names(&on).contains(&"studio_demo".to_string()),
        "{:?}",
        names(&on)
    );
    for off in ["off", "false"] {
        let s = load_with_env(&example_file(), env(&[("CONCIERTO__DEMO_TRIGGERS", off)]))
            .unwrap_or_else(|e| panic!("{off}: {e}"));
        let n = names(&s);
        assert!(!n.contains(&"studio_demo".to_string()), "{off}: {n:?}");
        assert_eq!(
            n.len(),
            names(&on).len() - 1,
            "{off}: only the demo goes: {n:?}"
        );
        assert!(n.contains(&"daily_content_generation".to_string()), "{n:?}");
    }
}
