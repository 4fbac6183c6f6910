//! Retries in place: a retry with no backoff is run again at once by the
//! worker that failed it, without copying the entry; only its attempt
//! record (`<attempt>:<error>` in the tries hash) is written, fenced. The
//! record is applied wherever the entry is read again (reclaimed after a
//! crash, swept after a reconnect, handed back, dead-lettered, copied for
//! a retry with a backoff, shown by the CLI's inspect code) and leaves the
//! hash with the entry.

use std::time::Duration;

use millrace::Client;
use millrace_core::Conn;
use millrace_core::{
    DeadRetention, Delivery, Envelope, FailOutcome, Failure, Queue, ReadFrom, inspect,
};

use crate::common::*;

fn retention() -> DeadRetention {
    DeadRetention::new(1000, Duration::ZERO)
}

fn envelope(d: &Delivery) -> Envelope {
    Envelope::decode(d.fields.clone().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"))
}

async fn read_one(q: &Queue, c: &mut Conn, consumer: &str) -> Delivery {
    let mut got = q
        .read(c, consumer, 1, Duration::from_millis(100), &ReadFrom::New)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    got.pop().unwrap_or_else(|| panic!("nothing to read"))
}

async fn fail(
    q: &Queue,
    c: &mut Conn,
    consumer: &str,
    entry: &str,
    failure: Failure,
    error: &str,
) -> FailOutcome {
    q.fail(c, consumer, entry, failure, error, retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn again(next_attempt: u32) -> Failure {
    Failure::Again { next_attempt }
}

async fn tries_len(c: &mut Conn) -> u64 {
    millrace_core::redis::cmd("HLEN")
        .arg("millrace:{default}:tries")
        .query_async(c)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn setup(url: &str) -> (Queue, Conn) {
    let mut c = conn(url).await;
    let q = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    let client = Client::connect(url).await.unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue_with(
            &probe_job("p", 0),
            millrace::EnqueueOptions::new().max_attempts(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (q, c)
}

/// Retried in place twice, then the worker crashes: another worker
/// reclaims the entry with attempt 3, the CLI's pending list shows it, and
/// its dead-letter carries attempt 3 and the last error; nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_retried_in_place_keeps_its_attempt_through_a_crash_and_a_dead_letter() {
    let redis = redis();
    let url = redis.url();
    let (q, mut c) = setup(&url).await;
    let d = read_one(&q, &mut c, "a").await;
    let entry = d.entry_id.clone();
    for (n, e) in [(2, "boom 1"), (3, "boom 2")] {
        assert_eq!(
            fail(&q, &mut c, "a", &entry, again(n), e).await,
            FailOutcome::Retried
        );
    }
    assert_eq!(
        fail(&q, &mut c, "b", &entry, again(9), "not mine").await,
        FailOutcome::LeaseLost,
        "fenced"
    );
    let stats = inspect::stats(&mut c, &q)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stats.in_flight, stats.retried), (1, 2), "{stats:?}");
    let listed = inspect::pending(&mut c, &q, &inspect::PendingFilter::default(), 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = listed[0].entry.as_ref().and_then(|e| e.get("attempt"));
    assert_eq!(shown, Some("3"), "the CLI shows the attempt running");
    // "a" crashes: "b" reclaims the same entry with attempt 3, not 1.
    let r = q
        .reclaim(&mut c, "b", Duration::ZERO, 10, 5, retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.claimed.len(), 1);
    assert_eq!(r.claimed[0].entry_id, entry, "never copied");
    let env = envelope(&r.claimed[0]);
    assert_eq!((env.attempt, env.error.as_deref()), (3, Some("boom 2")));
    assert_eq!(
        fail(&q, &mut c, "b", &entry, Failure::Dead, "boom 3").await,
        FailOutcome::Dead
    );
    let dead = dead_entries(&mut c, "default").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].get("attempt").map(String::as_str), Some("3"));
    assert_eq!(dead[0].get("error").map(String::as_str), Some("boom 3"));
    assert_eq!(tries_len(&mut c).await, 0, "the record left with the entry");
    wait_left(
        &c,
        "default",
        Left {
            dead: 1,
            ..Left::default()
        },
    )
    .await;
}

/// A reconnect's sweep, a hand-back and a retry with a backoff (copied
/// through the delayed set) all carry the attempt record on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_record_follows_a_sweep_a_hand_back_and_a_delayed_retry() {
    let redis = redis();
    let url = redis.url();
    let (q, mut c) = setup(&url).await;
    let d = read_one(&q, &mut c, "a").await;
    let entry = d.entry_id.clone();
    assert_eq!(
        fail(&q, &mut c, "a", &entry, again(2), "x").await,
        FailOutcome::Retried
    );
    let own = q
        .own_entries(&mut c, "a", std::slice::from_ref(&entry), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(envelope(&own[0]).attempt, 2);
    let n = q
        .release(&mut c, "a", std::slice::from_ref(&entry), retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1);
    assert_eq!(tries_len(&mut c).await, 0);
    let copy = read_one(&q, &mut c, "b").await;
    assert_ne!(copy.entry_id, entry, "handed back as a new entry");
    assert_eq!(envelope(&copy).attempt, 2);
    assert_eq!(
        fail(&q, &mut c, "b", &copy.entry_id, again(3), "y").await,
        FailOutcome::Retried
    );
    // A retry with a backoff, the fields read by the script: attempt 4
    // is stored, the record of attempt 3 is gone with the entry.
    let retry = Failure::Retry {
        delay: Duration::from_millis(10),
        next_attempt: 4,
    };
    assert_eq!(
        fail(&q, &mut c, "b", &copy.entry_id, retry, "z").await,
        FailOutcome::Retried
    );
    assert_eq!(tries_len(&mut c).await, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let p = q
        .promote(&mut c, 10, retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.moved, 1);
    let next = read_one(&q, &mut c, "b").await;
    let env = envelope(&next);
    assert_eq!((env.attempt, env.error.as_deref()), (4, Some("z")));
    q.ack(&mut c, std::slice::from_ref(&next.entry_id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_left(&c, "default", Left::default()).await;
}

/// End to end with a worker: a job that fails with no backoff runs again
/// at once as the same entry, then succeeds; nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_retries_in_place_and_leaves_nothing_behind() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let builder = millrace_worker::Worker::builder(fast_config(&url)).register(
        move |job: Probe, ctx: millrace_core::JobContext| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((ctx.attempt, ctx.entry_id.clone()));
                if ctx.attempt < job.succeed_on {
                    return Err(millrace_core::JobError::retry_after(
                        Duration::ZERO,
                        "not yet",
                    ));
                }
                Ok(())
            }
        },
    );
    let worker = spawn(builder);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&probe_job("thrice", 3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("attempt missing after {seen:?}"));
        seen.push(s);
    }
    let attempts: Vec<u32> = seen.iter().map(|s| s.0).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        seen.iter().all(|s| s.1 == seen[0].1),
        "one entry for every attempt: {seen:?}"
    );
    let c = conn(&url).await;
    wait_left(&c, "default", Left::default()).await;
    let mut c = c;
    let retried: u64 = millrace_core::redis::cmd("HGET")
        .arg("millrace:{default}:stats")
        .arg("retried")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(retried, 2);
    worker.shutdown().await;
}
