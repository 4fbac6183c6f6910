//! A real `millrace-worker` process that records every job it runs, for
//! end-to-end tests of the CLI and the web dashboard.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::{HarnessError, workspace_bin};

/// A `millrace-worker` on some queues with `--record-runs`, killed on drop.
pub struct WorkerProcess {
    child: Child,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

/// The worker binary, built once per test run.
fn bin() -> Result<PathBuf, HarnessError> {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    if let Some(b) = BIN.get() {
        return Ok(b.clone());
    }
    let b = workspace_bin("millrace-worker", "millrace-worker")?;
    Ok(BIN.get_or_init(|| b).clone())
}

impl WorkerProcess {
    /// Starts a worker against `redis_url` on `queues` (comma-separated),
    /// blocking 200 ms per read, metrics on a free port, never relaying an
    /// outbox, with `extra` flags last.
    pub fn start(redis_url: &str, queues: &str, extra: &[&str]) -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir()?;
        let record = dir.path().join("runs");
        let child = Command::new(bin()?)
            .env("MILLRACE_REDIS_URL", redis_url)
            .env_remove("MILLRACE_DATABASE_URL")
            .env("RUST_LOG", "error")
            .args(["--queues", queues, "--block", "200ms"])
            .args(["--metrics-port", "0"])
            .arg("--record-runs")
            .arg(&record)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Self {
            child,
            record,
            _dir: dir,
        })
    }

    /// How many times job `id` succeeded so far.
    pub fn runs_of(&self, id: &str) -> usize {
        self.runs().iter().filter(|l| *l == id).count()
    }

    /// The ids of every job that succeeded so far, in order.
    pub fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
