//! The axum service example (`worker/examples/axum_service.rs`): an HTTP
//! handler enqueues, the worker in the same process runs the job, and
//! Ctrl-C (SIGINT) stops both with exit 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::processes::{Proc, wait_exit};

fn http_post(port: u16, path: &str) -> Option<(u16, String)> {
    crate::metrics::http(port, "POST", path)
}

#[test]
fn the_axum_service_example_enqueues_on_post_runs_the_job_in_process_and_stops_on_ctrl_c() {
    let bin = millrace_tests::workspace_example("millrace-worker", "axum_service")
        .unwrap_or_else(|e| panic!("{e}"));
    let redis = redis();
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sent = dir.path().join("sent");
    let child = Command::new(&bin)
        .env("MILLRACE_REDIS_URL", redis.url())
        .env("PORT", port.to_string())
        .env("INVOICES_SENT", &sent)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start axum_service: {e}"));
    let mut child = Proc(child);

    let (status, body) = millrace_tests::wait_for("the service to answer", WAIT, || {
        http_post(port, "/invoices/42")
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 202, "POST /invoices/42: {body}");
    let body: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let job_id = body["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job_id in {body}"));

    let line = format!("{job_id} 42");
    millrace_tests::wait_for("the job to run", WAIT, || {
        let log = std::fs::read_to_string(&sent).unwrap_or_default();
        log.lines().any(|l| l == line).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let interrupted = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(interrupted.success());
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "exit after Ctrl-C: {status}");
}
