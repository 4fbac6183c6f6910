//! Failures: retries with growing backoff, exhaustion, permanent errors,
//! panics, and entries that cannot be run at all.

use std::time::Duration;

use millrace::Client;
use millrace_core::{Envelope, JobId, Queue};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_twice_then_succeeding_backs_off_per_the_formula() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    // The handler reports the server time just before each failure; the
    // retry script schedules at (its own server time) + backoff, so the
    // score lies in [before + delay, observed + delay].
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c2 = c.clone();
    let builder =
        millrace_worker::Worker::builder(fast_config(&url)).register(move |job: Probe, ctx| {
            let tx = tx.clone();
            let mut c = c2.clone();
            async move {
                let before = server_ms(&mut c).await;
                let _ = tx.send((ctx.attempt, before));
                probe(job, ctx, tokio::sync::mpsc::unbounded_channel().0).await
            }
        });
    let worker = spawn(builder);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = client
        .enqueue(&probe_job("thrice", 3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let policy = probe_policy();
    let mut attempts = Vec::new();
    let mut delays = Vec::new();
    for _ in 0..3 {
        let (attempt, before) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("attempt missing after {attempts:?}"));
        attempts.push(attempt);
        if attempt == 3 {
            break;
        }
        let delay = policy.delay_with(attempt, 0.0).as_millis() as u64;
        let mut score = None;
        while score.is_none() {
            score = millrace_core::redis::cmd("ZSCORE")
                .arg("millrace:{default}:delayed")
                .arg(id.as_str())
                .query_async::<Option<u64>>(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let after = server_ms(&mut c).await;
        let score = score.unwrap_or_default();
        assert!(
            score >= before + delay && score <= after + delay,
            "attempt {attempt}: score {score} outside [{}, {}]",
            before + delay,
            after + delay
        );
        delays.push(delay);
    }
    assert_eq!(attempts, [1, 2, 3], "the handler saw attempts 1..3");
    assert_eq!(delays, [200, 400], "delays double per the policy");
    wait_left(&c, "default", Left::default()).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_jobs_are_dead_lettered_with_their_last_error() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let doomed = client
        .enqueue(&probe_job("doomed", 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..20 {
        client
            .enqueue(&probe_job(&format!("fine{i}"), 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
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
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d["id"], doomed.0);
    assert_eq!(d["name"], "probe");
    assert_eq!(d["attempt"], "3");
    assert_eq!(d["error"], "doomed failed attempt 3");
    let payload: Probe = serde_json::from_str(&d["payload"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        payload,
        probe_job("doomed", 0),
        "the original payload is kept"
    );
    assert!(d.contains_key("dead_at") && d.contains_key("entry"));
    let mut runs = 0;
    while let Ok(s) = rx.try_recv() {
        runs += 1;
        if s.tag == "doomed" {
            assert!(s.attempt <= 3);
        }
    }
    assert_eq!(runs, 23, "20 successes and 3 attempts of the doomed job");
    let stats: Vec<u64> = millrace_core::redis::cmd("HMGET")
        .arg("millrace:{default}:stats")
        .arg("processed")
        .arg("retried")
        .arg("dead")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats, [20, 2, 1]);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_skip_retries_and_panics_are_retried() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut hopeless = probe_job("hopeless", 0);
    hopeless.permanent = true;
    client
        .enqueue(&hopeless)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut panicky = probe_job("panicky", 2);
    panicky.panic = true;
    client
        .enqueue(&panicky)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
    assert_eq!(dead[0]["error"], "hopeless is hopeless");
    assert_eq!(dead[0]["attempt"], "1", "a permanent error is not retried");
    let mut panicky_attempts = Vec::new();
    while let Ok(s) = rx.try_recv() {
        if s.tag == "panicky" {
            panicky_attempts.push(s.attempt);
        }
    }
    assert_eq!(
        panicky_attempts,
        [1, 2],
        "the panic was a failed attempt, then retried"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_entries_are_dead_lettered_and_the_worker_goes_on() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let queue = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    // 1. no job name at all
    let _: String = millrace_core::redis::cmd("XADD")
        .arg("millrace:{default}:stream")
        .arg("*")
        .arg("id")
        .arg("raw-1")
        .arg("payload")
        .arg("{}")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 2. a name no handler knows
    let unknown = Envelope::new(JobId::new().0, "no_such_job", "{}".into());
    // 3. a payload that is not the job's JSON
    let bad_json = Envelope::new(JobId::new().0, "probe", "{not json".into());
    // 4. a newer wire version
    let _: String = millrace_core::redis::cmd("XADD")
        .arg("millrace:{default}:stream")
        .arg("*")
        .arg("v")
        .arg("9")
        .arg("id")
        .arg("raw-9")
        .arg("name")
        .arg("probe")
        .arg("payload")
        .arg("{}")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .enqueue(&mut c, &[unknown, bad_json])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // A zero window: unknown names and newer versions are dead-lettered at
    // once, as before deferral existed (routine.rs tests the deferral).
    let mut cfg = fast_config(&url);
    cfg.unknown_job_window = Duration::ZERO;
    let worker = spawn(
        millrace_worker::Worker::builder(cfg)
            .register(move |job: Probe, ctx| probe(job, ctx, tx.clone())),
    );
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
    assert_eq!(s.tag, "after", "the worker kept going");
    wait_left(
        &c,
        "default",
        Left {
            dead: 4,
            ..Left::default()
        },
    )
    .await;
    // The four ran concurrently: their dead entries come in any order.
    let mut errors: Vec<String> = dead_entries(&mut c, "default")
        .await
        .into_iter()
        .map(|d| d["error"].clone())
        .collect();
    errors.sort();
    assert_eq!(errors[0], "undecodable entry: missing field `name`");
    assert_eq!(
        errors[1],
        "undecodable entry: unsupported wire version 9 (this build reads up to 1)"
    );
    assert!(
        errors[2].starts_with("undecodable payload for job `probe`: key must be a string"),
        "{}",
        errors[2]
    );
    assert_eq!(
        errors[3],
        "unknown job name `no_such_job`: this worker runs probe"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_fails_its_attempt() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg.job_timeout = Some(Duration::from_millis(200));
    let worker = spawn(
        millrace_worker::Worker::builder(cfg)
            .register(move |job: Probe, ctx| probe(job, ctx, tx.clone())),
    );
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut slow = probe_job("slow", 1);
    slow.sleep_ms = 5_000;
    client
        .enqueue_with(&slow, millrace::EnqueueOptions::new().max_attempts(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = conn(&url).await;
    eventually("the slow job dead-lettered", || {
        let mut c = c.clone();
        async move { left(&mut c, "default").await.dead == 1 }
    })
    .await;
    let dead = dead_entries(&mut c, "default").await;
    assert_eq!(dead[0]["error"], "timed out after 200ms");
    assert!(rx.try_recv().is_ok());
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_stream_is_bounded_by_count_and_age() {
    use millrace_core::{DeadRetention, ReadFrom};
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let queue = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    queue
        .declare(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let c2 = c.clone();
    let bury = |n: usize, retention: DeadRetention| {
        let queue = queue.clone();
        let mut c = c2.clone();
        async move {
            let envs: Vec<Envelope> = (0..n)
                .map(|i| Envelope::new(JobId::new().0, "probe", format!("{{\"n\":{i}}}")))
                .collect();
            queue
                .enqueue(&mut c, &envs)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let got = queue
                .read(&mut c, "w", n, Duration::from_millis(100), &ReadFrom::New)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            for d in got {
                let r = queue
                    .fail(
                        &mut c,
                        "w",
                        &d.entry_id,
                        millrace_core::Failure::Dead,
                        "x",
                        retention,
                    )
                    .await;
                assert_eq!(r.ok(), Some(millrace_core::FailOutcome::Dead));
            }
        }
    };
    bury(8, DeadRetention::new(5, Duration::ZERO)).await;
    assert_eq!(
        left(&mut c, "default").await.dead,
        5,
        "count retention keeps the newest 5"
    );
    bury(2, DeadRetention::new(0, Duration::ZERO)).await;
    assert_eq!(
        left(&mut c, "default").await.dead,
        7,
        "0 means no count limit"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    bury(1, DeadRetention::new(0, Duration::from_millis(200))).await;
    assert_eq!(
        left(&mut c, "default").await.dead,
        1,
        "age retention dropped the old entries"
    );
    let l = left(&mut c, "default").await;
    assert_eq!(
        (l.stream, l.pending),
        (0, 0),
        "dead-lettering acked and deleted the entries"
    );
}
