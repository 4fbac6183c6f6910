//! Reliability in routine operations: deploys (graceful restarts under a
//! steady producer), network blips (killed and black-holed connections),
//! skewed clocks, odd entries, shared job ids, timeouts, rolling deploys
//! with unknown job names, and pause. Each test failed on the `main` that
//! preceded its fix.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace::{Client, EnqueueOptions};
use millrace_core::Conn;
use millrace_core::{Envelope, Job, JobContext, JobError, JobId, Queue, QueueError};
use millrace_jobs::{Noop, Sleep};
use millrace_tests::Proxy;
use serde::{Deserialize, Serialize};

use crate::common::*;
use crate::processes::{read_runs, sigterm, start_worker};

/// The `default` queue's stream key.
const STREAM: &str = "millrace:{default}:stream";

async fn group_consumers(c: &mut Conn) -> Vec<String> {
    let infos: Vec<HashMap<String, millrace_core::redis::Value>> =
        millrace_core::redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(STREAM)
            .arg("millrace")
            .query_async(c)
            .await
            .unwrap_or_default();
    infos
        .iter()
        .filter_map(|m| {
            m.get("name")
                .and_then(|v| millrace_core::redis::from_redis_value_ref::<String>(v).ok())
        })
        .collect()
}

/// Where a job that never ran is: a line per missing id, for the failure
/// message (pending under which consumer, or still in the stream).
async fn whereabouts(c: &mut Conn, missing: &[String]) -> String {
    let pending: Vec<(String, String, u64, u64)> = millrace_core::redis::cmd("XPENDING")
        .arg(STREAM)
        .arg("millrace")
        .arg("-")
        .arg("+")
        .arg(10_000)
        .query_async(c)
        .await
        .unwrap_or_default();
    let entries: Vec<(String, HashMap<String, String>)> = millrace_core::redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query_async(c)
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for id in missing.iter().take(10) {
        let entry = entries.iter().find(|(_, f)| f.get("id") == Some(id));
        let place = match entry {
            None => "nowhere in the stream".to_owned(),
            Some((eid, _)) => match pending.iter().find(|p| &p.0 == eid) {
                Some(p) => format!("pending for {} (idle {} ms)", p.1, p.2),
                None => format!("entry {eid}, not pending"),
            },
        };
        out.push(format!("{id}: {place}"));
    }
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restarts_under_a_steady_producer_strand_nothing() {
    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The steady worker. Default lease (30 s): a job stranded under an
    // exited consumer would wait far past the bound below.
    let steady = dir.path().join("steady.runs");
    let _b = start_worker(&url, &steady, &[]);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (ids, stop) = (ids.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Noop> = (0..10).map(|_| Noop::default()).collect();
                let got = client
                    .enqueue_many(&batch)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                ids.lock().unwrap_or_else(|e| panic!("{e}")).extend(got);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut records = vec![steady];
    let mut c = conn(&url).await;
    for i in 0..24 {
        let record = dir.path().join(format!("a{i}.runs"));
        let before = group_consumers(&mut c).await.len();
        let mut a = start_worker(&url, &record, &["--concurrency", "8"]);
        records.push(record);
        // As a rollout does, restart it once it is up (it joins the group
        // at start); then let it work a moment.
        eventually("the new worker to join the group", || {
            let mut c = c.clone();
            async move { group_consumers(&mut c).await.len() > before }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(0..200))).await;
        sigterm(&a);
        let status = tokio::task::block_in_place(|| {
            crate::processes::wait_exit(&mut a, Duration::from_secs(15))
        });
        assert!(status.success(), "restart {i}: worker exit {status}");
    }
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = ids
        .lock()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    assert!(ids.len() > 500, "the producer enqueued only {}", ids.len());
    // Every job runs within seconds of the last restart: none stranded
    // below the group's last-delivered id, none waiting a lease.
    let paths: Vec<&std::path::Path> = records.iter().map(|p| p.as_path()).collect();
    let deadline = Instant::now() + Duration::from_secs(8);
    let missing = loop {
        let runs = read_runs(&paths);
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !runs.contains_key(id.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !missing.is_empty() {
        panic!(
            "{} of {} jobs did not run within 8 s of the last restart:\n{}",
            missing.len(),
            ids.len(),
            whereabouts(&mut c, &missing).await
        );
    }
    wait_left(&c, "default", Left::default()).await;
    // Every exited worker left the group: only the steady one is there.
    assert_eq!(
        group_consumers(&mut c).await.len(),
        1,
        "exited consumers left behind"
    );
}

/// Kills the worker's blocked reader connections (`cmd=xreadgroup`), and
/// waits until a new one blocks again.
fn kill_readers(admin: &mut millrace_core::redis::Connection) {
    let blocked = |admin: &mut millrace_core::redis::Connection| -> Vec<String> {
        let list: String = millrace_core::redis::cmd("CLIENT")
            .arg("LIST")
            .query(admin)
            .unwrap_or_else(|e| panic!("{e}"));
        list.lines()
            .filter(|l| l.contains("cmd=xreadgroup"))
            .filter_map(|l| l.split(' ').next()?.strip_prefix("id=").map(str::to_owned))
            .collect()
    };
    let ids = millrace_tests::wait_for("a blocked reader", WAIT, || {
        let ids = blocked(admin);
        (!ids.is_empty()).then_some(ids)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for id in ids {
        let _: i64 = millrace_core::redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(&id)
            .query(admin)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_reconnects_do_not_count_as_deliveries() {
    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let args = [
        "--lease",
        "2s",
        "--reclaim-every",
        "200ms",
        "--max-deliveries",
        "3",
        "--concurrency",
        "4",
    ];
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = start_worker(&url, &ra, &args);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = client
        .enqueue(&Sleep { ms: 3_000 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = conn(&url).await;
    let deliveries = |c: Conn| async move {
        let mut c = c;
        let rows: Vec<(String, String, u64, u64)> = millrace_core::redis::cmd("XPENDING")
            .arg(STREAM)
            .arg("millrace")
            .arg("-")
            .arg("+")
            .arg(10)
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        rows.first().map(|r| r.3)
    };
    eventually("the long job to start", || {
        let c = c.clone();
        async move { deliveries(c).await.is_some() }
    })
    .await;
    let mut admin = redis.connection().unwrap_or_else(|e| panic!("{e}"));
    // Four network blips while the job runs.
    for _ in 0..4 {
        tokio::task::block_in_place(|| kill_readers(&mut admin));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::task::block_in_place(|| kill_readers(&mut admin));
    assert_eq!(
        deliveries(c.clone()).await,
        Some(1),
        "reconnects raised the delivery count"
    );
    // Then its worker crashes: another takes the job over and runs it.
    a.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = a.wait();
    let _b = start_worker(&url, &rb, &args);
    eventually("the job to run on the second worker", || {
        let rb = rb.clone();
        let id = id.clone();
        async move { read_runs(&[&rb]).contains_key(id.as_str()) }
    })
    .await;
    wait_left(&c, "default", Left::default()).await;
    assert!(dead_entries(&mut c, "default").await.is_empty());
}

/// `XADD` of `fields` plus `extra` filler fields to the default stream.
async fn xadd_wide(c: &mut Conn, fields: &[(&str, &str)], extra: usize) {
    let mut cmd = millrace_core::redis::cmd("XADD");
    cmd.arg(STREAM).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    for i in 0..extra {
        cmd.arg(format!("x{i}")).arg("1");
    }
    let _: String = cmd.query_async(c).await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_with_thousands_of_fields_are_dead_lettered_with_the_reason() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    Queue::new("default")
        .unwrap_or_else(|e| panic!("{e}"))
        .declare(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Undecodable (no name), and a job that would fail and be retried.
    xadd_wide(&mut c, &[("id", "wide-raw"), ("payload", "{}")], 4_000).await;
    let failing = r#"{"tag":"wide","succeed_on":0}"#;
    let probe_fields = [
        ("id", "wide-probe"),
        ("name", "probe"),
        ("payload", failing),
    ];
    xadd_wide(&mut c, &probe_fields, 4_000).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let w = spawn(probe_worker(&url, tx));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&probe_job("after", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the good job did not run"));
    assert_eq!(s.tag, "after", "the wide probe must never run");
    wait_left(
        &c,
        "default",
        Left {
            dead: 2,
            ..Left::default()
        },
    )
    .await;
    let dead = dead_entries(&mut c, "default").await;
    for d in &dead {
        let fields = if d["id"] == "wide-raw" { 4002 } else { 4003 };
        assert_eq!(
            d["error"],
            format!("undecodable entry: entry has {fields} fields (at most 64 allowed)"),
            "{d:?}"
        );
        assert!(
            d.len() < 20,
            "the dead entry keeps the envelope's fields only"
        );
    }
    let mut ids: Vec<&str> = dead.iter().map(|d| d["id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["wide-probe", "wide-raw"]);
    assert_eq!(
        dead.iter()
            .find(|d| d["id"] == "wide-probe")
            .map(|d| d["payload"].as_str()),
        Some(failing)
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_delayed_envelope_never_blocks_the_due_jobs_behind_it() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let too_many = serde_json::to_string(&vec!["f"; 9_000]).unwrap_or_default();
    for (i, (id, env)) in [
        ("bad-json", "{not json".to_owned()),
        ("too-many", too_many),
        ("numbers", "[1,2]".to_owned()),
    ]
    .into_iter()
    .enumerate()
    {
        let _: () = millrace_core::redis::pipe()
            .cmd("HSET")
            .arg("millrace:{default}:jobs")
            .arg(id)
            .arg(env)
            .ignore()
            .cmd("ZADD")
            .arg("millrace:{default}:delayed")
            .arg(i)
            .arg(id)
            .ignore()
            .query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for tag in ["a", "b", "c"] {
        client
            .enqueue_in(&probe_job(tag, 1), Duration::from_millis(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let w = spawn(probe_worker(&url, tx));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("due jobs blocked behind bad envelopes: ran {seen:?}"));
        seen.push(s.tag);
    }
    wait_left(
        &c,
        "default",
        Left {
            dead: 3,
            ..Left::default()
        },
    )
    .await;
    let mut errors: Vec<String> = dead_entries(&mut c, "default")
        .await
        .into_iter()
        .map(|d| format!("{}: {}", d["id"], d["error"]))
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            "bad-json: stored envelope cannot be promoted: not a JSON array",
            "numbers: stored envelope cannot be promoted: not a flat list of strings",
            "too-many: stored envelope cannot be promoted: entry has 4500 fields (at most 64 allowed)",
        ]
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_skewed_clock_is_not_pruned() {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "{lib} missing: install Debian's `faketime` package (.ci/run does)"
    );
    let skewed = |cmd: &mut std::process::Command| {
        cmd.env("LD_PRELOAD", lib)
            .env("FAKETIME", "-120s")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    };
    // The skew is real in this environment.
    let mut date = std::process::Command::new("date");
    date.arg("+%s");
    skewed(&mut date);
    let out = date.output().unwrap_or_else(|e| panic!("{e}"));
    let faked: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    assert!(
        now.saturating_sub(faked) >= 100,
        "faketime did not skew `date`"
    );

    let redis = redis();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = std::process::Command::new(worker_bin());
    cmd.env("MILLRACE_REDIS_URL", &url)
        // Never relay (or touch) a database outbox from a test.
        .env_remove("MILLRACE_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .arg("--record-runs")
        .arg(dir.path().join("runs"))
        .args(["--block", "500ms", "--metrics-port", "0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    skewed(&mut cmd);
    let _w = crate::processes::Proc(cmd.spawn().unwrap_or_else(|e| panic!("{e}")));
    let mut c = conn(&url).await;
    let queue = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    eventually("the skewed worker's heartbeat", || {
        let mut c = c.clone();
        let queue = queue.clone();
        async move {
            millrace_core::inspect::consumers(&mut c, &queue)
                .await
                .is_ok_and(|cs| cs.iter().any(|c| c.heartbeat_age_ms.is_some()))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let consumers = millrace_core::inspect::consumers(&mut c, &queue)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(consumers.len(), 1, "{consumers:?}");
    let age = consumers[0].heartbeat_age_ms.unwrap_or(u64::MAX);
    assert!(
        age < 5_000,
        "heartbeat {age} ms old: written on the worker's clock"
    );
    // The ops CLI's prune keeps it.
    let cli =
        millrace_tests::workspace_bin("millrace-cli", "millrace").unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(cli)
        .args([
            "--redis-url",
            &url,
            "--json",
            "consumers",
            "default",
            "--prune",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(rows[0]["state"], "alive", "{rows}");
    assert_eq!(rows[0]["pruned"], false, "{rows}");
    assert_eq!(
        group_consumers(&mut c).await.len(),
        1,
        "the live worker was pruned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_jobs_sharing_an_id_both_retry_and_run() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let w = spawn(probe_worker(&url, tx));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shared = JobId("shared-id".to_owned());
    for tag in ["first", "second"] {
        client
            .enqueue_with(
                &probe_job(tag, 2),
                EnqueueOptions::new().job_id(shared.clone()),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut second_attempts = Vec::new();
    while second_attempts.len() < 2 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                panic!("a retry vanished; second attempts seen: {second_attempts:?}")
            });
        if s.attempt == 2 {
            second_attempts.push(s.tag);
        }
    }
    second_attempts.sort();
    assert_eq!(second_attempts, ["first", "second"]);
    let c = conn(&url).await;
    wait_left(&c, "default", Left::default()).await;

    // Scheduling an id already waiting is refused, not overwritten.
    let later = EnqueueOptions::new()
        .job_id(JobId("later".to_owned()))
        .delay(Duration::from_secs(3600));
    client
        .enqueue_with(&probe_job("kept", 1), later.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let Err(err) = client
        .enqueue_with(&probe_job("overwriter", 1), later)
        .await
    else {
        panic!("a second live job with the same id must be refused");
    };
    assert!(
        matches!(
            err,
            millrace::EnqueueError::Redis(QueueError::DuplicateId { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("already scheduled or retrying"),
        "{err}"
    );
    let mut c = c;
    let stored: String = millrace_core::redis::cmd("HGET")
        .arg("millrace:{default}:jobs")
        .arg("later")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stored.contains("kept") && !stored.contains("overwriter"));
    w.shutdown().await;
}

/// A job that waits for its cancellation token and reports seeing it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Patient;

impl Job for Patient {
    const NAME: &'static str = "patient";
    fn retry() -> millrace_core::RetryPolicy {
        millrace_core::RetryPolicy::exponential(1)
    }
    fn timeout() -> Option<Duration> {
        Some(Duration::from_millis(200))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_handler_sees_its_token_before_it_is_dropped() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&str>();
    let w = spawn(
        millrace_worker::Worker::builder(fast_config(&url)).register(
            move |_: Patient, ctx: JobContext| {
                let tx = tx.clone();
                async move {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(10)) => Ok(()),
                        () = ctx.cancel.cancelled() => {
                            let _ = tx.send("saw the token");
                            Err(JobError::retry("stopped cleanly"))
                        }
                    }
                }
            },
        ),
    );
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&Patient)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .ok()
        .flatten();
    assert_eq!(
        seen,
        Some("saw the token"),
        "the handler was dropped unwarned"
    );
    let mut c = conn(&url).await;
    wait_left(
        &c,
        "default",
        Left {
            dead: 1,
            ..Left::default()
        },
    )
    .await;
    let dead = dead_entries(&mut c, "default").await;
    assert_eq!(
        dead[0]["error"], "timed out after 200ms",
        "a timeout fails the attempt"
    );
    w.shutdown().await;
}

/// A job only the newer worker of a rolling deploy knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Newer;

impl Job for Newer {
    const NAME: &'static str = "newer";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_job_names_wait_for_a_worker_that_knows_them() {
    let redis = redis();
    let url = redis.url();
    let mut cfg = fast_config(&url);
    cfg.unknown_job_window = Duration::from_secs(3);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    // The old worker: it knows only `probe`.
    let old = spawn(
        millrace_worker::Worker::builder(cfg.clone())
            .register(move |job: Probe, ctx| probe(job, ctx, tx.clone())),
    );
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let newer = client
        .enqueue(&Newer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = conn(&url).await;
    let stored = |c: Conn, id: String| async move {
        let mut c = c;
        millrace_core::redis::cmd("HGET")
            .arg("millrace:{default}:jobs")
            .arg(id)
            .query_async::<Option<String>>(&mut c)
            .await
            .ok()
            .flatten()
    };
    eventually("the unknown job to be deferred", || {
        let (c, id) = (c.clone(), newer.as_str().to_owned());
        async move { stored(c, id).await.is_some() }
    })
    .await;
    let env = stored(c.clone(), newer.as_str().to_owned())
        .await
        .unwrap_or_default();
    assert!(env.contains("unknown job name `newer`"), "{env}");
    assert!(
        env.contains(r#""attempt","1""#),
        "a deferral keeps the attempt: {env}"
    );
    assert!(
        dead_entries(&mut c, "default").await.is_empty(),
        "dead-lettered at once"
    );
    // A job nobody will ever know goes to the dead letters past the window.
    let lost = Envelope::new(JobId::new().0, "typo", "{}".into());
    let lost_id = lost.id.clone();
    Queue::new("default")
        .unwrap_or_else(|e| panic!("{e}"))
        .enqueue(&mut c, &[lost])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the typo job to be deferred", || {
        let (c, id) = (c.clone(), lost_id.clone());
        async move { stored(c, id).await.is_some() }
    })
    .await;
    // A rolling deploy: the old worker goes, the newer one arrives within
    // the window and runs the job it knows.
    old.shutdown().await;
    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
    let new = spawn(millrace_worker::Worker::builder(cfg).register(
        move |_: Newer, ctx: JobContext| {
            let ntx = ntx.clone();
            async move {
                let _ = ntx.send(ctx.attempt);
                Ok(())
            }
        },
    ));
    let attempt = tokio::time::timeout(WAIT, nrx.recv()).await.ok().flatten();
    assert_eq!(
        attempt,
        Some(1),
        "the newer worker runs it, as a first attempt"
    );
    wait_left(
        &c,
        "default",
        Left {
            dead: 1,
            ..Left::default()
        },
    )
    .await;
    let dead = dead_entries(&mut c, "default").await;
    let err = &dead[0]["error"];
    assert!(
        err.starts_with("unknown job name `typo`") && err.contains("window"),
        "{err}"
    );
    new.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_takes_effect_within_a_second_while_a_read_blocks() {
    let redis = redis();
    let url = redis.url();
    let mut cfg = fast_config(&url);
    cfg.block = Duration::from_secs(5);
    cfg.lease = Duration::from_secs(20);
    cfg.renew_every = Duration::from_secs(5);
    cfg.reclaim_every = Duration::from_secs(10);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let w = spawn(
        millrace_worker::Worker::builder(cfg)
            .register(move |job: Probe, ctx| probe(job, ctx, tx.clone())),
    );
    let mut c = conn(&url).await;
    let queue = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    // Let the worker settle into its 5 s blocking read.
    tokio::time::sleep(Duration::from_millis(800)).await;
    queue
        .set_paused(&mut c, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&probe_job("while paused", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let early = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
    assert!(early.is_err(), "a job started 1 s after the pause");
    queue
        .set_paused(&mut c, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("not run after resume"));
    assert_eq!(s.tag, "while paused");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_connection_fails_readiness_then_heals_and_loses_nothing() {
    let redis = redis();
    let proxy = Proxy::start(redis.port()).unwrap_or_else(|e| panic!("{e}"));
    let cfg = fast_config(&proxy.url());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = millrace_worker::Worker::builder(cfg)
        .register(move |job: Probe, ctx| probe(job, ctx, tx.clone()))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let health = worker.health();
    let stop = millrace_core::CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone()));
    let ready = || async {
        let deadline = Instant::now() + WAIT;
        while health.readiness().is_err() {
            assert!(
                Instant::now() < deadline,
                "not ready: {:?}",
                health.readiness()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    ready().await;
    let client = Client::connect(&redis.url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tags = std::collections::HashSet::new();
    client
        .enqueue(&probe_job("before", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = tokio::time::timeout(WAIT, rx.recv()).await.ok().flatten();
    assert_eq!(s.map(|s| s.tag), Some("before".to_owned()));

    proxy.black_hole();
    let t = Instant::now();
    let why = loop {
        if let Err(why) = health.readiness() {
            break why;
        }
        assert!(
            t.elapsed() < Duration::from_secs(6),
            "still ready 6 s into a black hole"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        why.starts_with("queue default: fetch loop made no progress"),
        "{why} (after {:?})",
        t.elapsed()
    );
    for i in 0..20 {
        let tag = format!("during {i}");
        client
            .enqueue(&probe_job(&tag, 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tags.insert(tag);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.forward();
    while !tags.is_empty() {
        let s = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("jobs did not resume: {tags:?}"));
        tags.remove(&s.tag);
    }
    ready().await;
    let c = conn(&redis.url()).await;
    wait_left(&c, "default", Left::default()).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_checks_pending_idle_and_heartbeat_in_one_step() {
    use millrace_core::{Leave, PruneRule};
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let queue = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    queue
        .declare(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for name in ["holder", "beating", "silent"] {
        queue
            .join(&mut c, name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let env = Envelope::new(JobId::new().0, "probe", "{}".into());
    held_by(&mut c, &queue, "holder", env).await;
    let rule = PruneRule {
        min_idle: Duration::from_millis(300),
        min_silence: Duration::from_millis(300),
    };
    let prune = |c: Conn, name: &'static str| {
        let queue = queue.clone();
        async move {
            let mut c = c;
            queue
                .prune_consumer(&mut c, name, rule)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    assert_eq!(
        prune(c.clone(), "silent").await,
        Leave::Busy,
        "seen just now"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    queue
        .heartbeat(&mut c, "beating")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(prune(c.clone(), "holder").await, Leave::Pending);
    assert_eq!(prune(c.clone(), "beating").await, Leave::Alive);
    assert_eq!(prune(c.clone(), "silent").await, Leave::Removed);
    let left = group_consumers(&mut c).await;
    assert!(
        !left.contains(&"silent".to_owned()) && left.len() == 2,
        "{left:?}"
    );
}
