//! The README's multi-process commands on one machine, as printed: `serve
//! orchestrator`, `serve scheduler` and `agent --role content-creator` against
//! one nats-server, with the studio's default `server.metrics_addr`. Each
//! process takes its own metrics port (orchestrator 9101, scheduler 9102, an
//! agent any free port it logs), so all three start and answer `/readyz` 200.

use std::time::{Duration, Instant};

use concierto_e2e::{Sandbox, readyz};

/// The studio's default metrics address: what a studio that does not set
/// `server.metrics_addr` runs with (the sandbox sets port 0 otherwise).
const DEFAULT: (&str, &str) = ("CONCIERTO__SERVER__METRICS_ADDR", "127.0.0.1:9464");

/// The port in the `metrics on http://127.0.0.1:PORT` line of a process's log.
fn logged_port(log: &str) -> Option<u16> {
    let rest = log.split("metrics on http://").nth(1)?;
    let addr = rest.split_whitespace().next()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

async fn ready(sb: &Sandbox, what: &str, port: impl Fn(&Sandbox) -> Option<u16>) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(p) = port(sb)
            && let Some((200, _)) = readyz(p).await
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer /readyz 200\n{}",
            sb.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_orchestrator_serve_scheduler_and_an_agent_on_one_machine_all_get_ready() {
    let mut sb = Sandbox::new(&[DEFAULT]);
    sb.spawn("orchestrator", &["serve", "orchestrator"]);
    sb.spawn("scheduler", &["serve", "scheduler"]);
    sb.spawn(
        "agent",
        &["agent", "--role", "content-creator", "--replicas", "2"],
    );

    let orchestrator = ready(&sb, "serve orchestrator", |_| Some(9101)).await;
    let scheduler = ready(&sb, "serve scheduler", |_| Some(9102)).await;
    let agent = ready(&sb, "agent", |sb| logged_port(&sb.procs_log("agent"))).await;
    assert_ne!(agent, 0);
    assert!(![orchestrator, scheduler, 9464].contains(&agent), "{agent}");
    for name in ["orchestrator", "scheduler", "agent"] {
        let log = sb.procs_log(name);
        assert!(
            log.contains("metrics on http://127.0.0.1:"),
            "{name}:\n{log}"
        );
        assert!(!log.contains("Address already in use"), "{name}:\n{log}");
    }
    for name in ["agent", "scheduler", "orchestrator"] {
        assert!(
            sb.proc(name).terminate(Duration::from_secs(20)),
            "{name} did not stop\n{}",
            sb.logs()
        );
    }
}
