//! `Client::status`, `result` and `wait`: a job followed through every
//! state, results kept with a TTL, typed decode errors.

use std::time::Duration;

use millrace::{Client, EnqueueOptions, JobStatus, ResultError};
use millrace_core::{
    DeadRetention, Envelope, Failure, HistoryRetention, Job, JobContext, JobError, JobId, Queue,
};
use millrace_worker::Worker;
use serde::{Deserialize, Serialize};

use crate::common::*;

/// A job that answers: its result is the sum, or it fails for good.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
    #[serde(default)]
    fail: bool,
}

impl Job for Add {
    const NAME: &'static str = "add";
    const QUEUE: &'static str = "calc";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sum {
    sum: i64,
}

async fn add(job: Add, _ctx: JobContext) -> Result<Sum, JobError> {
    if job.fail {
        return Err(JobError::permanent("cannot add today"));
    }
    Ok(Sum { sum: job.a + job.b })
}

fn add_worker(url: &str, result_ttl: Duration) -> Running {
    let mut cfg = fast_config(url);
    cfg.result_ttl = result_ttl;
    spawn(Worker::builder(cfg).register_with_result(add))
}

fn envelope() -> Envelope {
    Envelope::new(JobId::new().0, "probe", "{}".into())
}

async fn client(url: &str) -> Client {
    Client::connect(url).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn status(c: &Client, q: &str, id: &str) -> JobStatus {
    c.status(q, id).await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn status_follows_a_job_through_every_state() {
    let redis = redis();
    let url = redis.url();
    let mut conn = conn(&url).await;
    let c = client(&url).await;
    let q = Queue::new("states").unwrap_or_else(|e| panic!("{e}"));
    q.declare(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        status(&c, "states", &JobId::new().0).await,
        JobStatus::Unknown
    );
    assert_eq!(status(&c, "states", "order-42").await, JobStatus::Unknown);

    // Scheduled.
    let later = c
        .enqueue_with(
            &probe_job("later", 1),
            EnqueueOptions::new()
                .queue("states")
                .delay(Duration::from_secs(60)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let now = server_ms(&mut conn).await;
    match status(&c, "states", later.as_str()).await {
        JobStatus::Scheduled { due_at_ms } => {
            assert!(
                due_at_ms >= now + 59_000 && due_at_ms <= now + 61_000,
                "{due_at_ms}"
            )
        }
        other => panic!("{other:?}"),
    }

    // Queued.
    let queued = c
        .enqueue_with(&probe_job("q", 1), EnqueueOptions::new().queue("states"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match status(&c, "states", queued.as_str()).await {
        JobStatus::Queued {
            attempt,
            enqueued_at_ms,
            ..
        } => {
            assert_eq!(attempt, 1);
            assert!(enqueued_at_ms.is_some());
        }
        other => panic!("{other:?}"),
    }

    // Running, on consumer c1 (c0 takes the queued job first).
    let taken = q
        .read(
            &mut conn,
            "c0",
            10,
            Duration::from_millis(10),
            &millrace_core::ReadFrom::New,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken.len(), 1);
    let running = envelope();
    let held = held_by(&mut conn, &q, "c1", running.clone()).await;
    match status(&c, "states", &running.id).await {
        JobStatus::Running {
            consumer,
            entry_id,
            attempt,
            deliveries,
            last_error,
            ..
        } => {
            assert_eq!(consumer, "c1");
            assert_eq!(entry_id, held.entry_id);
            assert_eq!((attempt, deliveries, last_error), (1, 1, None));
        }
        other => panic!("{other:?}"),
    }

    // Retried in place (no backoff): still running, attempt 2, last error.
    let again = Failure::Again { next_attempt: 2 };
    q.fail(
        &mut conn,
        "c1",
        &held.entry_id,
        again,
        "flaky",
        DeadRetention::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    match status(&c, "states", &running.id).await {
        JobStatus::Running {
            attempt,
            last_error,
            ..
        } => assert_eq!((attempt, last_error.as_deref()), (2, Some("flaky"))),
        other => panic!("{other:?}"),
    }

    // Retrying after a backoff: next at, attempt, last error.
    let retry = Failure::Retry {
        delay: Duration::from_secs(30),
        next_attempt: 3,
    };
    q.fail(
        &mut conn,
        "c1",
        &held.entry_id,
        retry,
        "timeout",
        DeadRetention::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    match status(&c, "states", &running.id).await {
        JobStatus::Retrying {
            next_at_ms,
            attempt,
            last_error,
        } => {
            assert!(next_at_ms > now, "{next_at_ms}");
            assert_eq!((attempt, last_error.as_deref()), (3, Some("timeout")));
        }
        other => panic!("{other:?}"),
    }

    // Dead, with its error: from the history, and from the dead-letter
    // stream when the history is off.
    let doomed = envelope();
    let held = held_by(&mut conn, &q, "c1", doomed.clone()).await;
    q.fail(
        &mut conn,
        "c1",
        &held.entry_id,
        Failure::Dead,
        "hopeless",
        DeadRetention::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    match status(&c, "states", &doomed.id).await {
        JobStatus::Dead {
            error, attempts, ..
        } => assert_eq!((error.as_str(), attempts), ("hopeless", Some(1))),
        other => panic!("{other:?}"),
    }
    let quiet = q.clone().with_history(HistoryRetention::off());
    let doomed = envelope();
    let held = held_by(&mut conn, &quiet, "c1", doomed.clone()).await;
    quiet
        .fail(
            &mut conn,
            "c1",
            &held.entry_id,
            Failure::Dead,
            "no history",
            DeadRetention::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match status(&c, "states", &doomed.id).await {
        JobStatus::Dead { error, .. } => assert_eq!(error, "no history"),
        other => panic!("{other:?}"),
    }

    // Succeeded, with its result, on the worker that ran it.
    let w = add_worker(&url, Duration::from_secs(60));
    let id = c
        .enqueue(&Add {
            a: 2,
            b: 3,
            fail: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sum: Option<Sum> = c
        .wait("calc", id.as_str(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sum, Some(Sum { sum: 5 }));
    match status(&c, "calc", id.as_str()).await {
        JobStatus::Succeeded(f) => {
            assert_eq!(f.consumer, w.consumer);
            assert_eq!(f.attempts, Some(1));
            assert_eq!(f.name, "add");
            assert!(f.took_ms.is_some());
        }
        other => panic!("{other:?}"),
    }
    let again: Option<Sum> = c
        .result("calc", id.as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, Some(Sum { sum: 5 }));
    w.shutdown().await;
}

#[tokio::test]
async fn wait_reports_dead_jobs_timeouts_and_bad_result_types() {
    let redis = redis();
    let url = redis.url();
    let c = client(&url).await;
    let w = add_worker(&url, Duration::from_secs(60));

    let dead = c
        .enqueue(&Add {
            a: 1,
            b: 1,
            fail: true,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match c.wait::<Sum>("calc", dead.as_str(), WAIT).await {
        Err(ResultError::Dead { error, .. }) => assert_eq!(error, "cannot add today"),
        other => panic!("{other:?}"),
    }

    // A job no worker runs (another queue): the wait ends at its timeout,
    // naming the status then.
    let idle = c
        .enqueue_with(
            &Add {
                a: 1,
                b: 2,
                fail: false,
            },
            EnqueueOptions::new().queue("nobody"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let err = c
        .wait::<Sum>("nobody", idle.as_str(), Duration::from_millis(300))
        .await
        .err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    match &err {
        Some(ResultError::Timeout { status, .. }) => {
            assert!(matches!(**status, JobStatus::Queued { .. }), "{status:?}")
        }
        other => panic!("{other:?}"),
    }
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.ends_with("did not finish within 300ms (it is queued)"),
        "{text}"
    );

    // A result read as the wrong type is a typed error, not a panic.
    let ok = c
        .enqueue(&Add {
            a: 4,
            b: 4,
            fail: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: Option<Sum> = c
        .wait("calc", ok.as_str(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match c.result::<Vec<String>>("calc", ok.as_str()).await {
        Err(ResultError::Decode { job_id, .. }) => assert_eq!(job_id, ok.as_str()),
        other => panic!("{other:?}"),
    }
    // A job type registered without a result: succeeded, nothing to read.
    let err = c.status("bad name", "x").await.err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.starts_with("invalid queue name")),
        "{err:?}"
    );
    w.shutdown().await;
}

#[tokio::test]
async fn results_expire_after_their_ttl() {
    let redis = redis();
    let url = redis.url();
    let c = client(&url).await;
    let w = add_worker(&url, Duration::from_millis(300));
    let id = c
        .enqueue(&Add {
            a: 5,
            b: 5,
            fail: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sum: Option<Sum> = c
        .wait("calc", id.as_str(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sum, Some(Sum { sum: 10 }));
    let mut conn = conn(&url).await;
    let key = Queue::new("calc")
        .unwrap_or_else(|e| panic!("{e}"))
        .keys()
        .result(id.as_str());
    let ttl: i64 = millrace_core::redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ttl > 0 && ttl <= 300, "{ttl}");
    eventually("the result to expire", || {
        let c = c.clone();
        let id = id.clone();
        async move {
            c.result::<Sum>("calc", id.as_str())
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        }
    })
    .await;
    // Expired, the job is still known as succeeded (from the history), and
    // wait() returns at once with no result.
    assert!(matches!(
        status(&c, "calc", id.as_str()).await,
        JobStatus::Succeeded(_)
    ));
    let none: Option<Sum> = c
        .wait("calc", id.as_str(), Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(none, None);
    w.shutdown().await;
}
