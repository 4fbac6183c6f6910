//! Reliability: leases, reclaim, max deliveries, fencing, shutdown, Redis
//! faults and consumer hygiene, with real processes killed for real.

use std::time::{Duration, Instant};

use millrace::Client;
use millrace_core::{Envelope, FailOutcome, Failure, JobId, Queue, ReadFrom};
use millrace_jobs::{Crash, Noop, Sleep};
use millrace_tests::{Persistence, RedisServer};

use crate::common::*;
use crate::processes::{read_runs, sigterm, start_worker, wait_all_ran, wait_exit};

const LEASE: &[&str] = &["--lease", "2s", "--reclaim-every", "200ms"];

async fn pending_for(c: &mut millrace_core::Conn, consumer_prefix: &str) -> usize {
    let rows: Vec<(String, String, u64, u64)> = millrace_core::redis::cmd("XPENDING")
        .arg("millrace:{default}:stream")
        .arg("millrace")
        .arg("-")
        .arg("+")
        .arg(1000)
        .query_async(c)
        .await
        .unwrap_or_default();
    rows.iter()
        .filter(|r| r.1.starts_with(consumer_prefix) || consumer_prefix.is_empty())
        .count()
}

async fn wait_for_group(url: &str) {
    let c = conn(url).await;
    eventually("the worker to create its group", || {
        let mut c = c.clone();
        async move {
            millrace_core::redis::cmd("XINFO")
                .arg("GROUPS")
                .arg("millrace:{default}:stream")
                .query_async::<Vec<millrace_core::redis::Value>>(&mut c)
                .await
                .is_ok_and(|g| g.len() == 1)
        }
    })
    .await;
}

async fn wait_pending(c: &mut millrace_core::Conn, n: usize) {
    eventually(&format!("{n} pending entries"), || {
        let mut c = c.clone();
        async move { pending_for(&mut c, "").await == n }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_renewal_keeps_a_long_job_from_being_reclaimed() {
    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = start_worker(&url, &ra, LEASE);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 5 s of work under a 2 s lease: only renewal keeps it with worker a.
    let id = client
        .enqueue(&Sleep { ms: 5_000 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = conn(&url).await;
    wait_pending(&mut c, 1).await;
    let mut b = start_worker(&url, &rb, LEASE);
    eventually("the long job to finish", || {
        let (ra, rb) = (ra.clone(), rb.clone());
        async move { !read_runs(&[&ra, &rb]).is_empty() }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        read_runs(&[&ra]).get(id.as_str()),
        Some(&1),
        "worker a finished it"
    );
    assert!(read_runs(&[&rb]).is_empty(), "worker b never took it over");
    sigterm(&a);
    sigterm(&b);
    assert!(wait_exit(&mut a, Duration::from_secs(10)).success());
    assert!(wait_exit(&mut b, Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_job_is_finished_by_another_within_about_one_lease() {
    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = start_worker(&url, &ra, LEASE);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = client
        .enqueue(&Sleep { ms: 1_000 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = conn(&url).await;
    wait_pending(&mut c, 1).await;
    let mut b = start_worker(&url, &rb, LEASE);
    let _ = a.kill(); // SIGKILL, mid-job
    let _ = a.wait();
    let killed = Instant::now();
    eventually("worker b to finish the job", || {
        let rb = rb.clone();
        async move { !read_runs(&[&rb]).is_empty() }
    })
    .await;
    let took = killed.elapsed();
    assert_eq!(read_runs(&[&rb]).get(id.as_str()), Some(&1));
    assert!(
        read_runs(&[&ra]).is_empty(),
        "worker a died before finishing"
    );
    // lease 2 s + reclaim tick 0.2 s + the job's own 1 s, plus slack
    assert!(took < Duration::from_secs(6), "took {took:?}");
    wait_left(&c, "default", Left::default()).await;
    sigterm(&b);
    assert!(wait_exit(&mut b, Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_always_crashes_its_worker_is_dead_lettered_after_max_deliveries() {
    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let record = dir.path().join("runs");
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = client
        .enqueue(&Crash {
            percent: 100,
            after_ms: 0,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = conn(&url).await;
    let args = [
        "--lease",
        "1s",
        "--reclaim-every",
        "200ms",
        "--max-deliveries",
        "3",
    ];
    let mut starts = 0;
    while left(&mut c, "default").await.dead == 0 {
        assert!(
            starts < 6,
            "still not dead-lettered after {starts} worker starts"
        );
        starts += 1;
        let mut w = start_worker(&url, &record, &args);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = w.try_wait() {
                break; // crashed
            }
            if left(&mut c, "default").await.dead == 1 {
                sigterm(&w);
                assert!(wait_exit(&mut w, Duration::from_secs(10)).success());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker neither crashed nor dead-lettered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        starts, 4,
        "three deliveries crashed three workers; the fourth dead-lettered it"
    );
    let dead = dead_entries(&mut c, "default").await;
    assert_eq!(dead[0]["id"], id.0);
    assert!(
        dead[0]["error"].starts_with("delivered 3 times without an outcome (max_deliveries 3)"),
        "{}",
        dead[0]["error"]
    );
    assert_eq!(
        dead[0]["attempt"], "1",
        "crashes are deliveries, not attempts"
    );
    assert_eq!(
        left(&mut c, "default").await,
        Left {
            dead: 1,
            ..Left::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_cannot_retry_dead_letter_or_renew() {
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let queue = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    queue
        .declare(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let env = Envelope::new(JobId::new().0, "probe", "{}".into());
    queue
        .enqueue(&mut c, &[env])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = queue
        .read(&mut c, "old", 1, Duration::from_millis(100), &ReadFrom::New)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let entry = got[0].entry_id.clone();
    // "new" takes the entry over, as a reclaimer would after the lease.
    let taken = queue
        .reclaim(&mut c, "new", Duration::ZERO, 10, 5, Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken.claimed.len(), 1);
    let retry = Failure::Retry {
        delay: Duration::ZERO,
        next_attempt: 2,
    };
    let r = queue
        .fail(&mut c, "old", &entry, retry, "late", Default::default())
        .await;
    assert_eq!(r.ok(), Some(FailOutcome::LeaseLost), "stale retry refused");
    let r = queue
        .fail(
            &mut c,
            "old",
            &entry,
            Failure::Dead,
            "late",
            Default::default(),
        )
        .await;
    assert_eq!(
        r.ok(),
        Some(FailOutcome::LeaseLost),
        "stale dead-letter refused"
    );
    let lost = queue
        .renew(&mut c, "old", std::slice::from_ref(&entry))
        .await;
    assert_eq!(
        lost.ok(),
        Some(vec![entry.clone()]),
        "stale renewal reports the lease lost"
    );
    let released = queue
        .release(
            &mut c,
            "old",
            std::slice::from_ref(&entry),
            Default::default(),
        )
        .await;
    assert_eq!(released.ok(), Some(0), "stale hand-back refused");
    assert_eq!(
        left(&mut c, "default").await,
        Left {
            stream: 1,
            pending: 1,
            ..Left::default()
        },
        "the refused calls changed nothing"
    );
    let r = queue
        .fail(&mut c, "new", &entry, retry, "owner", Default::default())
        .await;
    assert_eq!(r.ok(), Some(FailOutcome::Retried), "the owner can");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_its_lease_cancels_the_attempt_and_writes_nothing() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg.renew_every = Duration::from_millis(200);
    let cancelled = std::sync::Arc::new(tokio::sync::Notify::new());
    let seen = cancelled.clone();
    let worker = spawn(millrace_worker::Worker::builder(cfg).register(
        move |job: Probe, ctx: millrace_core::JobContext| {
            let tx = tx.clone();
            let seen = seen.clone();
            async move {
                let _ = tx.send(job.tag);
                ctx.cancel.cancelled().await;
                seen.notify_one();
                Err(millrace_core::JobError::retry("cancelled"))
            }
        },
    ));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&probe_job("stolen", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = tokio::time::timeout(WAIT, rx.recv()).await;
    let mut c = conn(&url).await;
    let rows: Vec<(String, String, u64, u64)> = millrace_core::redis::cmd("XPENDING")
        .arg("millrace:{default}:stream")
        .arg("millrace")
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: Vec<String> = millrace_core::redis::cmd("XCLAIM")
        .arg("millrace:{default}:stream")
        .arg("millrace")
        .arg("thief")
        .arg(0)
        .arg(&rows[0].0)
        .arg("JUSTID")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::timeout(WAIT, cancelled.notified())
        .await
        .unwrap_or_else(|_| panic!("the handler was not cancelled after its lease was lost"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l = left(&mut c, "default").await;
    assert_eq!(
        l,
        Left {
            stream: 1,
            pending: 1,
            ..Left::default()
        },
        "no retry or dead entry written"
    );
    assert_eq!(
        pending_for(&mut c, "thief").await,
        1,
        "the thief still owns it"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_running_work_back_at_once() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg.grace = Duration::from_millis(300);
    cfg.lease = Duration::from_secs(30); // a reclaim would take 30 s
    cfg.renew_every = Duration::from_secs(10);
    let a = spawn(
        millrace_worker::Worker::builder(cfg.clone())
            .register(move |job: Probe, ctx| probe(job, ctx, tx.clone())),
    );
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut long = probe_job("long", 1);
    long.sleep_ms = 60_000;
    client
        .enqueue(&long)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&long)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("not started"));
    }
    let stopping = Instant::now();
    a.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    let mut c = conn(&url).await;
    assert_eq!(
        left(&mut c, "default").await,
        Left {
            stream: 2,
            ..Left::default()
        },
        "both jobs back in the ready stream, nothing pending"
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let b = spawn(
        millrace_worker::Worker::builder(cfg)
            .register(move |job: Probe, ctx| probe(job, ctx, tx.clone())),
    );
    let started = Instant::now();
    for _ in 0..2 {
        let s = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("handed-back job not picked up at once"));
        assert_eq!(s.attempt, 1, "a handed-back job did not fail: same attempt");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    b.stop.cancel();
    let _ = b.handle.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_jobs_finish_within_the_grace_period() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let a = spawn(probe_worker(&url, tx));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut job = probe_job("short", 1);
    job.sleep_ms = 700;
    client.enqueue(&job).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("not started"));
    a.shutdown().await;
    let mut c = conn(&url).await;
    assert_eq!(
        left(&mut c, "default").await,
        Left::default(),
        "finished and acked before exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut w = start_worker(&url, &dir.path().join("r"), &["--grace", "60s"]);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&Sleep { ms: 60_000 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = conn(&url).await;
    wait_pending(&mut c, 1).await;
    // Delivered is not yet started (an entry read after the signal is
    // handed back at once): give the worker a moment to start the job.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&w);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        w.try_wait().ok().flatten().is_none(),
        "still in its grace period"
    );
    sigterm(&w);
    let status = wait_exit(&mut w, Duration::from_secs(3));
    assert_eq!(status.code(), Some(130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_survives_redis_restarting_with_aof_and_loses_nothing() {
    let mut redis =
        RedisServer::start_with(Persistence::AofAlways).unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let record = dir.path().join("runs");
    let mut w = start_worker(&url, &record, LEASE);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(
            client
                .enqueue(&Sleep { ms: 5 })
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    redis.kill();
    redis.restart().unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..300 {
        // the producer's own retries ride out the reconnect
        let mut tries = 0;
        loop {
            match client.enqueue(&Noop::default()).await {
                Ok(id) => {
                    ids.push(id);
                    break;
                }
                Err(e) => {
                    tries += 1;
                    assert!(tries < 50, "enqueue keeps failing after the restart: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    wait_all_ran(&[&record], &ids).await;
    let c = conn(&url).await;
    wait_left(&c, "default", Left::default()).await;
    assert!(
        w.try_wait().ok().flatten().is_none(),
        "the worker is still running"
    );
    sigterm(&w);
    assert!(wait_exit(&mut w, Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_recreates_a_lost_group_after_redis_restarts_empty() {
    let mut redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let record = dir.path().join("runs");
    let mut w = start_worker(&url, &record, LEASE);
    let c = conn(&url).await;
    wait_for_group(&url).await;
    redis.kill();
    redis.restart().unwrap_or_else(|e| panic!("{e}")); // no persistence: everything is gone
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let batch: Vec<Noop> = (0..100).map(|_| Noop::default()).collect();
    let ids = client
        .enqueue_many(&batch)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_all_ran(&[&record], &ids).await;
    wait_left(&c, "default", Left::default()).await;
    sigterm(&w);
    assert!(wait_exit(&mut w, Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_consumers_with_nothing_pending_are_pruned_and_busy_ones_kept() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let queue = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    queue
        .declare(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: i64 = millrace_core::redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg("millrace:{default}:stream")
        .arg("millrace")
        .arg("idle-ghost")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let env = Envelope::new(JobId::new().0, "probe", "{}".into());
    queue
        .enqueue(&mut c, &[env])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = queue
        .read(
            &mut c,
            "busy-ghost",
            1,
            Duration::from_millis(100),
            &ReadFrom::New,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut cfg = fast_config(&url);
    cfg.prune_consumers_after = Duration::from_secs(1);
    cfg.lease = Duration::from_secs(60); // keep busy-ghost's entry pending
    cfg.renew_every = Duration::from_secs(20);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let w = spawn(
        millrace_worker::Worker::builder(cfg)
            .register(move |job: Probe, ctx| probe(job, ctx, tx.clone())),
    );
    let consumers = |c: millrace_core::Conn| async move {
        let mut c = c;
        let infos: Vec<std::collections::HashMap<String, millrace_core::redis::Value>> =
            millrace_core::redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg("millrace:{default}:stream")
                .arg("millrace")
                .query_async(&mut c)
                .await
                .unwrap_or_default();
        infos
            .iter()
            .filter_map(|m| {
                m.get("name")
                    .and_then(|v| millrace_core::redis::from_redis_value_ref::<String>(v).ok())
            })
            .collect::<Vec<String>>()
    };
    eventually("the idle ghost to be pruned", || {
        let c = c.clone();
        async move { !consumers(c).await.contains(&"idle-ghost".to_owned()) }
    })
    .await;
    assert!(
        consumers(c.clone())
            .await
            .contains(&"busy-ghost".to_owned()),
        "a consumer with pending entries is kept"
    );
    assert!(
        consumers(c.clone()).await.contains(&w.consumer),
        "the live worker is kept"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_a_stalled_redis_lose_and_repeat_nothing() {
    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let record = dir.path().join("runs");
    let mut w = start_worker(&url, &record, &["--lease", "10s"]);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut admin = redis.connection().unwrap_or_else(|e| panic!("{e}"));
    wait_for_group(&url).await;
    let mut ids = Vec::new();
    for round in 0..6 {
        let batch: Vec<Sleep> = (0..100).map(|_| Sleep { ms: 2 }).collect();
        ids.extend(
            client
                .enqueue_many(&batch)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        if round % 2 == 0 {
            // Drop every client connection (the worker's reader mid-BLOCK
            // included); this admin connection survives (SKIPME yes).
            let _: u64 = millrace_core::redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .query(&mut admin)
                .unwrap_or_else(|e| panic!("{e}"));
        } else {
            // Freeze the server for a moment.
            let _: () = millrace_core::redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("0.5")
                .query(&mut admin)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_all_ran(&[&record], &ids).await;
    let mut c = conn(&url).await;
    wait_left(&c, "default", Left::default()).await;
    let runs = read_runs(&[&record]);
    assert_eq!(runs.len(), 600);
    assert!(runs.values().all(|n| *n == 1), "a job ran twice");
    let processed: u64 = millrace_core::redis::cmd("HGET")
        .arg("millrace:{default}:stats")
        .arg("processed")
        .query_async(&mut c)
        .await
        .unwrap_or(0);
    assert_eq!(processed, 600, "each job acked once");
    sigterm(&w);
    assert!(wait_exit(&mut w, Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_redis_down_exits_promptly() {
    let mut redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut w = start_worker(&url, &dir.path().join("r"), &["--grace", "5s"]);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3 {
        client
            .enqueue(&Sleep { ms: 800 })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut c = conn(&url).await;
    wait_pending(&mut c, 3).await;
    redis.kill();
    sigterm(&w);
    let t = Instant::now();
    let status = wait_exit(&mut w, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    // grace 5 s at most; acks that cannot be written give up in well under a second
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
}
