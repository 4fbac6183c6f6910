//! A relay dying between its Redis write and its outbox delete, over and
//! over: each committed row still becomes exactly one job.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use millrace::outbox;
use millrace_postgres::Failpoint;

use crate::common::{Env, Ping, assert_exactly_once, env};

/// Commits `n` jobs in transactions of 7 and rolls back one more
/// transaction; returns the committed ids.
async fn commit_some(env: &Env, first: u64, n: u64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut i = 0;
    while i < n {
        let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..7.min(n - i) {
            ids.push(
                outbox::enqueue(&mut tx, &Ping { n: first + i })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .0,
            );
            i += 1;
        }
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    outbox::enqueue(&mut tx, &Ping { n: 999_999 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    ids
}

#[tokio::test]
async fn a_relay_failing_after_its_redis_write_never_duplicates_a_job() {
    let env = env().await;
    let mut committed = Vec::new();
    for round in 0..100 {
        committed.extend(commit_some(&env, round * 100, 5).await);
        let mut c = env.config();
        c.failpoint = Some(Failpoint::FailAfterRedis);
        let mut failing = env.relay_with(c);
        // The script ran (jobs added, marks set), the delete rolled back.
        assert!(failing.relay_once().await.is_err());
        if round % 3 == 0 {
            env.drain().await;
        }
    }
    env.drain().await;
    assert_exactly_once(&env.jobs_in("outbox"), &committed);
    assert_eq!(env.outbox_rows().await, 0);
    assert_eq!(env.marks("outbox"), 0);
}

fn millrace_bin() -> PathBuf {
    millrace_tests::workspace_bin("millrace-cli", "millrace").unwrap_or_else(|e| panic!("{e}"))
}

fn spawn_relay(bin: &PathBuf, env: &Env, log: &std::path::Path, failpoint: Option<&str>) -> Child {
    let mut cmd = Command::new(bin);
    cmd.arg("relay")
        .arg("--redis-url")
        .arg(env.redis.url())
        .arg("--database-url")
        .arg(&env.db_url)
        .arg("--batch")
        .arg("20")
        .arg("--poll")
        .arg("100ms")
        .env("RUST_LOG", "info")
        .env_remove("MILLRACE_RELAY_FAILPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap_or_else(|e| panic!("{e}")));
    if let Some(fp) = failpoint {
        cmd.env("MILLRACE_RELAY_FAILPOINT", fp);
    }
    cmd.spawn().unwrap_or_else(|e| panic!("{e}"))
}

fn wait_for_line(log: &std::path::Path, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[tokio::test]
async fn a_relay_sigkilled_between_xadd_and_delete_never_duplicates_a_job() {
    let env = env().await;
    let bin = millrace_bin();
    let dir = tempfile_dir();
    let mut committed = Vec::new();
    let mut paused_kills = 0;
    let mut random_kills = 0;
    // Rows whose delete a randomly killed relay committed: that relay may
    // have died before it shortened their marks to the grace.
    let mut gone_in_random_rounds = std::collections::HashSet::new();
    for round in 0..24u64 {
        committed.extend(commit_some(&env, round * 1000, 60).await);
        let log = dir.join(format!("relay-{round}.log"));
        if round % 3 == 2 {
            // Chaos: SIGKILL wherever it happens to be.
            let before = env.outbox_ids().await;
            let mut child = spawn_relay(&bin, &env, &log, None);
            std::thread::sleep(Duration::from_millis(100 + fastrand::u64(..200)));
            child.kill().unwrap_or_else(|e| panic!("{e}"));
            let _ = child.wait();
            let after = env.outbox_ids().await;
            gone_in_random_rounds.extend(before.difference(&after).copied());
            random_kills += 1;
        } else {
            // Exactly between the Redis write and the delete, at batch 0..2.
            let fp = format!("pause-after-redis:{}", round % 3);
            let mut child = spawn_relay(&bin, &env, &log, Some(&fp));
            let paused = wait_for_line(
                &log,
                "failpoint: paused after redis",
                Duration::from_secs(20),
            );
            child.kill().unwrap_or_else(|e| panic!("{e}"));
            let _ = child.wait();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(paused, "the relay never reached its failpoint:\n{text}");
            paused_kills += 1;
        }
    }
    // Rows of the killed batches are still in the outbox; their jobs are in
    // Redis already. A last relay finishes the work.
    let log = dir.join("relay-final.log");
    let mut child = spawn_relay(&bin, &env, &log, None);
    // Its signal handler is installed before it says it started.
    assert!(wait_for_line(
        &log,
        "outbox relay started",
        Duration::from_secs(20)
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.outbox_rows().await > 0 {
        assert!(Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGTERM: a clean stop.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let jobs = env.jobs_in("outbox");
    assert_exactly_once(&jobs, &committed);
    // The relay processes run with the default grace: every mark is there
    // for 5 minutes more. Only a relay killed after its commit and before it
    // shortened its marks leaves them for the whole retention, and only a
    // random kill can land there (a paused relay dies before its commit).
    assert_eq!(
        env.marks("outbox"),
        committed.len(),
        "every relayed row's mark waits out its grace"
    );
    let kept = env.marks_kept("outbox");
    let stray: Vec<_> = kept
        .iter()
        .filter(|id| !gone_in_random_rounds.contains(id))
        .collect();
    assert!(
        stray.is_empty(),
        "marks kept for the whole retention though their relay lived to forget them: {stray:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "kills between XADD and delete: {paused_kills}, random kills: {random_kills}, committed: {}, jobs: {}, duplicated: 0, marks kept by a kill after commit: {}",
        committed.len(),
        jobs.len(),
        kept.len()
    );
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("millrace-relay-crash-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
    d
}
