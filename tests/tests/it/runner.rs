//! A user's own worker binary (`worker/examples/my_worker.rs`: two jobs and
//! `Runner::new(..).run()`), driven like `millrace-worker`.

use std::process::{Command, Stdio};
use std::time::Duration;

use millrace::{Client, Job};
use serde::{Deserialize, Serialize};

use crate::common::*;
use crate::metrics::http_get;
use crate::processes::{Proc, read_runs, sigterm, wait_exit};

/// The example's first job (queue `default`).
#[derive(Serialize, Deserialize)]
struct SendInvoice {
    invoice_id: u64,
}
impl Job for SendInvoice {
    const NAME: &'static str = "send_invoice";
}

/// The example's second job (queue `images`).
#[derive(Serialize, Deserialize)]
struct Resize {
    width: u32,
}
impl Job for Resize {
    const NAME: &'static str = "resize";
    const QUEUE: &'static str = "images";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_runner_binary_runs_its_jobs_serves_probes_and_exits_0_on_sigterm() {
    let bin = tokio::task::spawn_blocking(|| {
        millrace_tests::workspace_example("millrace-worker", "my_worker")
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let redis = redis();
    let url = redis.url();
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let record = dir.path().join("runs");
    let child = Command::new(&bin)
        .env("MILLRACE_REDIS_URL", &url)
        .env_remove("MILLRACE_DATABASE_URL")
        .env_remove("MILLRACE_QUEUES")
        .env("RUST_LOG", "warn")
        .arg("--record-runs")
        .arg(&record)
        .args(["--block", "500ms", "--metrics-addr", "127.0.0.1"])
        .args(["--metrics-port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start my_worker: {e}"));
    let mut child = Proc(child);

    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let invoice = client
        .enqueue(&SendInvoice { invoice_id: 42 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let resize = client
        .enqueue(&Resize { width: 640 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let records = [record.as_path()];
    let (invoice, resize) = (invoice.as_str(), resize.as_str());
    eventually("both jobs to run", || async move {
        let runs = read_runs(&records);
        runs.contains_key(invoice) && runs.contains_key(resize)
    })
    .await;
    let health = tokio::task::spawn_blocking(move || http_get(port, "/healthz"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.map(|r| r.0), Some(200));

    sigterm(&child);
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(20)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status}");
}
