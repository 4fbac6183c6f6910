//! Exactly-once effects: deliveries may repeat, committed effects do not.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use millrace::outbox;
use millrace_core::{CancellationToken, Job, JobContext};
use millrace_postgres::effects;
use serde::{Deserialize, Serialize};

use crate::common::{Env, env, eventually};

fn ctx(queue: &str, id: &str) -> JobContext {
    JobContext::new(id.into(), "0-1".into(), queue.into(), 1)
}

#[tokio::test]
async fn a_second_delivery_commits_nothing_and_a_concurrent_one_waits() {
    let env = env().await;
    let c = ctx("q", "job-1");
    // First delivery commits its effects.
    let tx = effects::begin(&env.pool, &c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tx = tx.unwrap_or_else(|| panic!("first delivery found the job processed"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        effects::begin(&env.pool, &c)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    assert!(
        effects::is_processed(&env.pool, "q", "job-1")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    // The same id in another queue is another job.
    assert!(
        effects::begin(&env.pool, &ctx("other", "job-1"))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );

    // Two deliveries at once: the second waits for the first; a rollback
    // lets it go ahead, a commit turns it away.
    let c2 = ctx("q", "job-2");
    let first = effects::begin(&env.pool, &c2)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("processed"));
    let pool = env.pool.clone();
    let c2b = c2.clone();
    let second =
        tokio::spawn(async move { effects::begin(&pool, &c2b).await.map(|t| t.is_some()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second delivery did not wait for the first"
    );
    first.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    let went_ahead = second
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        went_ahead,
        "after a rollback the second delivery owns the job"
    );

    let c3 = ctx("q", "job-3");
    let first = effects::begin(&env.pool, &c3)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("processed"));
    let pool = env.pool.clone();
    let second = tokio::spawn(async move { effects::begin(&pool, &c3).await.map(|t| t.is_some()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let went_ahead = second
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !went_ahead,
        "after a commit the second delivery must do nothing"
    );

    // Retention.
    sqlx::query("UPDATE millrace_processed_jobs SET processed_at = now() - interval '20 days' WHERE job_id = 'job-1'")
        .execute(&env.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let purged = effects::purge(&env.pool, effects::DEFAULT_RETENTION)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(purged, 1, "only the row past the retention goes");
}

/// The example worker's job (examples/effects_worker.rs).
#[derive(Debug, Serialize, Deserialize)]
struct Transfer {
    account: i64,
    cents: i64,
    hold_ms: u64,
}

impl Job for Transfer {
    const NAME: &'static str = "transfer";
    const QUEUE: &'static str = "ledger";
}

fn example_bin() -> PathBuf {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "-p",
            "millrace-postgres",
            "--example",
            "effects_worker",
        ])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "cannot build the effects_worker example");
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    // target/<profile>/deps/<test> → target/<profile>/examples/effects_worker
    let profile = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap_or_else(|| panic!("no target dir"));
    profile.join("examples").join("effects_worker")
}

fn spawn_worker(bin: &PathBuf, env: &Env, record: &std::path::Path) -> Child {
    Command::new(bin)
        .env("MILLRACE_REDIS_URL", env.redis.url())
        .env("MILLRACE_DATABASE_URL", &env.db_url)
        .env("EFFECTS_RECORD", record)
        .env("EFFECTS_LEASE_MS", "1500")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_kill_9_run_duplicates_deliveries_but_never_effects() {
    let env = env().await;
    let bin = example_bin();
    let record = std::env::temp_dir().join(format!("millrace-effects-{}", fastrand::u64(..)));
    // The ledger table, as the example creates it (before it first runs).
    sqlx::query("CREATE TABLE IF NOT EXISTS ledger (job_id text NOT NULL, account bigint NOT NULL, cents bigint NOT NULL)")
        .execute(&env.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    const JOBS: i64 = 300;
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let jobs: Vec<Transfer> = (0..JOBS)
        .map(|i| Transfer {
            account: i % 7,
            cents: 100,
            hold_ms: 40,
        })
        .collect();
    outbox::enqueue_many(&mut tx, &jobs)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let stop = CancellationToken::new();
    let relay = tokio::spawn(env.relay().run(stop.clone()));

    let mut workers = vec![
        spawn_worker(&bin, &env, &record),
        spawn_worker(&bin, &env, &record),
    ];
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let booked: i64 = sqlx::query_scalar("SELECT count(DISTINCT job_id) FROM ledger")
            .fetch_one(&env.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if booked == JOBS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {booked} of {JOBS} jobs booked after {kills} kills"
        );
        if kills < 12 {
            tokio::time::sleep(Duration::from_millis(250 + fastrand::u64(..250))).await;
            let i = kills % workers.len();
            workers[i].kill().unwrap_or_else(|e| panic!("{e}")); // SIGKILL
            let _ = workers[i].wait();
            workers[i] = spawn_worker(&bin, &env, &record);
            kills += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Let redeliveries of jobs whose effects committed before a kill run
    // out (their leases expire, another worker takes them, begin() is None).
    eventually("the ledger queue to empty", || async {
        let len: usize = millrace_core::redis::cmd("XLEN")
            .arg("millrace:{ledger}:stream")
            .query(&mut env.conn())
            .unwrap_or_else(|e| panic!("{e}"));
        len == 0
    })
    .await;
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    stop.cancel();
    relay.await.unwrap_or_else(|e| panic!("{e}"));

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&env.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let processed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM millrace_processed_jobs WHERE queue = 'ledger'")
            .fetch_one(&env.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let deliveries = std::fs::read_to_string(&record)
        .unwrap_or_default()
        .lines()
        .count() as i64;
    let _ = std::fs::remove_file(&record);
    eprintln!(
        "kills: {kills}, jobs: {JOBS}, deliveries: {deliveries}, ledger rows: {rows}, processed rows: {processed}"
    );
    assert_eq!(rows, JOBS, "effects duplicated or lost");
    assert_eq!(processed, JOBS);
    assert!(
        deliveries > JOBS,
        "no delivery was repeated ({deliveries}): the kills proved nothing"
    );
}
