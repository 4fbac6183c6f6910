//! Cancel: a delayed or ready job is removed (its unique lock released); a
//! running one's token fires, and its attempt ends as cancelled (not
//! retried, not dead-lettered, counted); finished and unknown jobs say so.

use std::time::Duration;

use millrace::{Cancel, Client, EnqueueOptions, Unique};
use millrace_core::Conn;
use millrace_core::history::Outcome;
use millrace_core::{Job, JobError, Keys, RetryPolicy};
use millrace_worker::Worker;
use serde::{Deserialize, Serialize};

use crate::common::*;
use crate::unique::{client, locks};

async fn stat(c: &mut Conn, field: &str) -> u64 {
    let k = Keys::new("millrace", "default").unwrap_or_else(|e| panic!("{e}"));
    let v: Option<u64> = millrace_core::redis::cmd("HGET")
        .arg(&k.stats)
        .arg(field)
        .query_async(c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    v.unwrap_or(0)
}

async fn cancel(client: &Client, id: &str) -> Cancel {
    client
        .cancel("default", id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_removes_delayed_and_ready_jobs_and_frees_their_keys() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let later = client
        .enqueue_with(
            &probe_job("later", 1),
            EnqueueOptions::new()
                .delay(Duration::from_secs(3600))
                .unique("k-later"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = client
        .enqueue_with(
            &probe_job("ready", 1),
            EnqueueOptions::new().unique("k-ready"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(locks(&mut c).await.len(), 2);
    assert_eq!(cancel(&client, later.as_str()).await, Cancel::Delayed);
    assert!(matches!(
        cancel(&client, ready.as_str()).await,
        Cancel::Ready { .. }
    ));
    assert_eq!(left(&mut c, "default").await, Left::default());
    assert!(locks(&mut c).await.is_empty(), "locks released");
    assert_eq!(stat(&mut c, "cancelled").await, 2);
    // Cancelled twice: the history says it was cancelled.
    match cancel(&client, later.as_str()).await {
        Cancel::Finished(f) => assert_eq!(f.outcome, Some(Outcome::Cancelled)),
        other => panic!("want finished (cancelled), got {other:?}"),
    }
    // The keys are free again.
    let again = client
        .submit(
            &probe_job("again", 1),
            EnqueueOptions::new().unique("k-ready"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.is_new());
}

/// A job that runs until its token fires, and reports that it saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Long {
    tag: String,
}

impl Job for Long {
    const NAME: &'static str = "long";
    fn retry() -> RetryPolicy {
        RetryPolicy::exponential(5).base(Duration::from_millis(10))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_running_job_fires_its_token_and_ends_it_as_cancelled() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let mut cfg = fast_config(&url);
    cfg.renew_every = Duration::from_millis(200);
    let builder = Worker::builder(cfg).register(move |_job: Long, ctx| {
        let tx = tx.clone();
        async move {
            let _ = tx.send("started");
            tokio::select! {
                () = ctx.cancel.cancelled() => {
                    let _ = tx.send("saw the token");
                    Err(JobError::retry("stopped"))
                }
                () = tokio::time::sleep(Duration::from_secs(60)) => Ok(()),
            }
        }
    });
    let worker = spawn(builder);
    let id = client
        .enqueue_with(
            &Long { tag: "l".into() },
            EnqueueOptions::new().unique(Unique::while_live("k-long")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = tokio::time::timeout(WAIT, rx.recv()).await.ok().flatten();
    assert_eq!(got, Some("started"));
    let Cancel::Running { consumer, .. } = cancel(&client, id.as_str()).await else {
        panic!("not running");
    };
    assert_eq!(consumer, worker.consumer);
    let got = tokio::time::timeout(WAIT, rx.recv()).await.ok().flatten();
    assert_eq!(got, Some("saw the token"));
    // Acknowledged: not retried, not dead-lettered, its lock and mark gone.
    wait_left(&c, "default", Left::default()).await;
    assert!(locks(&mut c).await.is_empty(), "lock released");
    assert_eq!(stat(&mut c, "cancelled").await, 1);
    assert_eq!(stat(&mut c, "retried").await, 0);
    let k = Keys::new("millrace", "default").unwrap_or_else(|e| panic!("{e}"));
    let marks: u64 = millrace_core::redis::cmd("ZCARD")
        .arg(&k.cancel)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(marks, 0);
    // No second attempt starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "ran again");
    // Finished now: a second cancel says so, from the history.
    match cancel(&client, id.as_str()).await {
        Cancel::Finished(f) => assert_eq!(f.outcome, Some(Outcome::Cancelled)),
        other => panic!("want finished (cancelled), got {other:?}"),
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_finished_and_unknown_jobs_says_so() {
    let redis = redis();
    let url = redis.url();
    let c = conn(&url).await;
    let client = client(&url).await;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let mut hopeless = probe_job("dead", 0);
    hopeless.permanent = true;
    let dead = client
        .enqueue(&hopeless)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = client
        .enqueue(&probe_job("ok", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let want = Left {
        dead: 1,
        ..Left::default()
    };
    wait_left(&c, "default", want).await;
    assert_eq!(cancel(&client, dead.as_str()).await, Cancel::Dead);
    match cancel(&client, done.as_str()).await {
        Cancel::Finished(f) => {
            assert_eq!(f.outcome, Some(Outcome::Succeeded));
            assert_eq!(f.job_id, done.as_str());
        }
        other => panic!("want finished (succeeded), got {other:?}"),
    }
    assert_eq!(cancel(&client, "no-such-job").await, Cancel::NotFound);
    wait_left(&c, "default", want).await;
    worker.shutdown().await;
}

/// A job that waits for a go, then fails with a retryable error.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flaky {
    tag: String,
}

impl Job for Flaky {
    const NAME: &'static str = "flaky";
    fn retry() -> RetryPolicy {
        RetryPolicy::exponential(5).base(Duration::from_millis(50))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_while_its_attempt_fails_is_not_retried() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut cfg = fast_config(&url);
    // No renewal sees the mark before the attempt fails: the failure write
    // is what must see it.
    cfg.lease = Duration::from_secs(60);
    cfg.renew_every = Duration::from_secs(20);
    let gate = go.clone();
    let builder = Worker::builder(cfg).register(move |_job: Flaky, _ctx| {
        let tx = tx.clone();
        let gate = gate.clone();
        async move {
            let _ = tx.send("started");
            gate.notified().await;
            Err::<(), _>(JobError::retry("failed after the cancel"))
        }
    });
    let worker = spawn(builder);
    let id = client
        .enqueue_with(
            &Flaky { tag: "f".into() },
            EnqueueOptions::new().unique(Unique::while_live("k-flaky")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = tokio::time::timeout(WAIT, rx.recv()).await.ok().flatten();
    assert_eq!(got, Some("started"));
    assert!(matches!(
        cancel(&client, id.as_str()).await,
        Cancel::Running { .. }
    ));
    go.notify_one();
    // Ended as cancelled by the failure write: nothing stored for a retry.
    wait_left(&c, "default", Left::default()).await;
    assert!(locks(&mut c).await.is_empty(), "lock released");
    assert_eq!(stat(&mut c, "cancelled").await, 1);
    assert_eq!(stat(&mut c, "retried").await, 0);
    match cancel(&client, id.as_str()).await {
        Cancel::Finished(f) => assert_eq!(f.outcome, Some(Outcome::Cancelled)),
        other => panic!("want finished (cancelled), got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "ran again");
    worker.shutdown().await;
}
