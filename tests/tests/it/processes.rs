//! Real worker processes.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use millrace::Client;
use millrace_jobs::Noop;

use crate::common::*;

/// A child process killed (SIGKILL) on drop, so a failing test leaves no
/// worker behind.
pub struct Proc(pub Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn start_worker(url: &str, record: &std::path::Path, extra: &[&str]) -> Proc {
    let child = Command::new(worker_bin())
        .env("MILLRACE_REDIS_URL", url)
        // Never relay (or touch) a database outbox from a test.
        .env_remove("MILLRACE_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .arg("--record-runs")
        .arg(record)
        .args(["--block", "500ms", "--metrics-port", "0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start millrace-worker: {e}"));
    Proc(child)
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("worker did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every job of `ids` is in the run records.
pub async fn wait_all_ran(records: &[&std::path::Path], ids: &[millrace::JobId]) {
    eventually("every job to run", || async move {
        let runs = read_runs(records);
        ids.iter().all(|id| runs.contains_key(id.as_str()))
    })
    .await;
}

pub fn read_runs(paths: &[&std::path::Path]) -> HashMap<String, u32> {
    let mut runs = HashMap::new();
    for p in paths {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        for line in text.lines() {
            *runs.entry(line.to_owned()).or_insert(0) += 1;
        }
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_through_two_worker_processes_run_once_each() {
    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (ra, rb) = (dir.path().join("a.runs"), dir.path().join("b.runs"));
    let mut a = start_worker(&url, &ra, &[]);
    let mut b = start_worker(&url, &rb, &[]);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ids = Vec::new();
    for _ in 0..10 {
        let batch: Vec<Noop> = (0..1000).map(|_| Noop::default()).collect();
        ids.extend(
            client
                .enqueue_many(&batch)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let runs = read_runs(&[&ra, &rb]);
        if runs.values().sum::<u32>() >= 10_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 10000 ran",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = conn(&url).await;
    wait_left(&c, "default", Left::default()).await;
    sigterm(&a);
    sigterm(&b);
    assert!(
        wait_exit(&mut a, Duration::from_secs(20)).success(),
        "worker a exit"
    );
    assert!(
        wait_exit(&mut b, Duration::from_secs(20)).success(),
        "worker b exit"
    );
    let runs = read_runs(&[&ra, &rb]);
    let per_a = read_runs(&[&ra]).len();
    let per_b = read_runs(&[&rb]).len();
    assert_eq!(runs.len(), 10_000, "every job ran");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} jobs ran more than once", twice.len());
    for id in &ids {
        assert!(runs.contains_key(id.as_str()), "job {id} never ran");
    }
    assert!(
        per_a > 0 && per_b > 0,
        "both workers took work ({per_a} / {per_b})"
    );
}

pub fn worker_output(args: &[&str], url: &str) -> (bool, String) {
    let out = Command::new(worker_bin())
        .env("MILLRACE_REDIS_URL", url)
        // Never relay (or touch) a database outbox from a test.
        .env_remove("MILLRACE_DATABASE_URL")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    // The fatal error is the last line (logs come before it).
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    (out.status.success(), last)
}

#[test]
fn the_worker_binary_refuses_bad_settings_in_one_line() {
    let (ok, err) = worker_output(
        &["--lease", "1s", "--renew-every", "2s"],
        "redis://127.0.0.1:1",
    );
    assert!(!ok);
    assert_eq!(
        err.trim_end(),
        "millrace-worker: invalid worker configuration: lease (1s) must exceed the renew interval (2s)"
    );
    let (ok, err) = worker_output(&["--queues", "a b"], "redis://127.0.0.1:1");
    assert!(!ok);
    assert!(err.contains("invalid queue name \"a b\""), "{err}");
}

#[test]
fn the_worker_binary_names_an_unreachable_redis_in_one_line() {
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let (ok, err) = worker_output(&[], &format!("redis://:secret@127.0.0.1:{port}"));
    assert!(!ok);
    assert_eq!(
        err.trim_end(),
        format!(
            "millrace-worker: cannot connect to Redis at redis://:***@127.0.0.1:{port}: connection refused"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_warnings_name_the_job_at_the_default_log_level() {
    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(worker_bin())
        .env("MILLRACE_REDIS_URL", &url)
        // Never relay (or touch) a database outbox from a test.
        .env_remove("MILLRACE_DATABASE_URL")
        .env("RUST_LOG", "info")
        .args(["--metrics-port", "0", "--block", "500ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut w = Proc(child);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let job = millrace_jobs::Fail {
        succeed_on: 0,
        permanent: false,
        message: "upstream said no".into(),
    };
    let retried = client
        .enqueue_with(&job, millrace::EnqueueOptions::new().max_attempts(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let c = conn(&url).await;
    wait_left(
        &c,
        "default",
        Left {
            dead: 1,
            ..Left::default()
        },
    )
    .await;
    sigterm(&w);
    assert!(wait_exit(&mut w, Duration::from_secs(10)).success());
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let line = |what: &str| {
        text.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} line in:\n{text}"))
            .to_owned()
    };
    for (what, attempt) in [
        ("attempt failed, retrying", 1),
        ("attempt failed, dead-lettering", 2),
    ] {
        let l = line(what);
        assert!(l.contains(&format!("job_id={retried}")), "{l}");
        assert!(
            l.contains("job=fail") && l.contains(&format!("attempt={attempt}")),
            "{l}"
        );
        assert!(l.contains("queue=\"default\""), "{l}");
    }
}
