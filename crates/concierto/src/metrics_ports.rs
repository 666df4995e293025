//! Where each process serves `/metrics`, `/healthz` and `/readyz`.
//!
//! `up` serves them on `server.metrics_addr`. `serve` and `agent` processes run
//! side by side on one machine (the README's multi-process commands), so while
//! the studio keeps the default `server.metrics_addr` each takes a port of its
//! own:
//!
//! | process                        | metrics port |
//! |--------------------------------|--------------|
//! | `serve orchestrator`           | 9101         |
//! | `serve scheduler`              | 9102         |
//! | `serve admin`                  | 9103         |
//! | `serve feedback`               | 9104         |
//! | `serve ingest`                 | 9105         |
//! | `serve tracker`                | 9106         |
//! | `serve dashboard`              | 9107         |
//! | `serve publisher`              | 9108         |
//! | `serve feedback-router`        | 9109         |
//! | `agent ...`                    | 0 (any free port, logged at info) |
//!
//! `serve a b ...` takes the port of its first service. A studio (or
//! `CONCIERTO__SERVER__METRICS_ADDR`) that sets another `server.metrics_addr`
//! is followed as written by every process (the deploy files set
//! `0.0.0.0:9464`, one process per container); an empty one turns the server
//! off.

/// `server.metrics_addr` when the studio does not set it (the loader's default).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// Each `serve` service's default metrics port.
pub const SERVICE_PORTS: &[(&str, u16)] = &[
    ("orchestrator", 9101),
    ("scheduler", 9102),
    ("admin", 9103),
    ("feedback", 9104),
    ("ingest", 9105),
    ("tracker", 9106),
    ("dashboard", 9107),
    ("publisher", 9108),
    ("feedback-router", 9109),
];

/// The metrics address of a `serve` process running `services`: the studio's
/// `configured` one when it is not the default, else the first service's port
/// from [`SERVICE_PORTS`] on the default's host.
pub fn serve_addr(configured: &str, services: &[String]) -> String {
    let port = services
        .first()
        .and_then(|s| SERVICE_PORTS.iter().find(|(name, _)| name == s))
        .map_or(0, |(_, port)| *port);
    with_port(configured, port)
}

/// The metrics address of an `agent` process: the studio's `configured` one
/// when it is not the default, else any free port (logged at start).
pub fn agent_addr(configured: &str) -> String {
    with_port(configured, 0)
}

fn with_port(configured: &str, port: u16) -> String {
    let configured = configured.trim();
    if configured != DEFAULT_METRICS_ADDR {
        return configured.to_string();
    }
    let host = configured
        .rsplit_once(':')
        .map_or("127.0.0.1", |(host, _)| host);
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_loaders() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("concierto.yaml");
        let agents =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
        std::fs::write(
            &file,
            format!(
                "agents:\n  paths: [\"{}\"]\nworkflows:\n  w:\n    steps:\n      - id: s\n        role: content-creator\n        task: Write.\n",
                agents.display()
            ),
        )
        .unwrap();
        let studio = concierto_core::config::load_with_env(&file, Vec::new()).unwrap();
        assert_eq!(studio.server.metrics_addr, DEFAULT_METRICS_ADDR);
    }

    #[test]
    fn each_service_has_its_port_unless_the_studio_sets_one() {
        let names = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            serve_addr(DEFAULT_METRICS_ADDR, &names(&["orchestrator"])),
            "127.0.0.1:9101"
        );
        assert_eq!(
            serve_addr(DEFAULT_METRICS_ADDR, &names(&["admin", "feedback"])),
            "127.0.0.1:9103"
        );
        assert_eq!(agent_addr(DEFAULT_METRICS_ADDR), "127.0.0.1:0");
        assert_eq!(
            serve_addr("0.0.0.0:9464", &names(&["scheduler"])),
            "0.0.0.0:9464"
        );
        assert_eq!(agent_addr(""), "");
        // Every service `serve` knows has a port of its own.
        for s in crate::services::SERVICES {
            assert!(SERVICE_PORTS.iter().any(|(n, _)| n == s), "{s}");
        }
        let mut ports: Vec<u16> = SERVICE_PORTS.iter().map(|(_, p)| *p).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), SERVICE_PORTS.len());
    }
}
