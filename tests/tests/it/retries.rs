//! Retries in place: a failed entry is never copied. With a backoff it is
//! parked (pending for the parking consumer, due in the retrying set) and
//! claimed back when due; with none it stays with its worker. Its attempt
//! number and error live in the tries hash and are applied wherever the
//! entry is read again: claimed back, reclaimed after a crash, swept after
//! a reconnect, handed back, dead-lettered, shown by the CLI's inspect code.

use std::time::Duration;

use millrace::Client;
use millrace_core::queue::FailedEntry;
use millrace_core::redis::aio::ConnectionManager;
use millrace_core::{
    DeadRetention, Delivery, Envelope, FailOutcome, Failure, Queue, ReadFrom, admin, inspect,
};

use crate::common::*;

fn retention() -> DeadRetention {
    DeadRetention::new(1000, Duration::ZERO)
}

fn envelope(d: &Delivery) -> Envelope {
    Envelope::decode(d.fields.clone().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"))
}

async fn read_one(q: &Queue, c: &mut ConnectionManager, consumer: &str) -> Delivery {
    let mut got = q
        .read(c, consumer, 1, Duration::from_millis(100), &ReadFrom::New)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    got.pop().unwrap_or_else(|| panic!("nothing to read"))
}

async fn fail(
    q: &Queue,
    c: &mut ConnectionManager,
    consumer: &str,
    entry: &str,
    failure: Failure,
    error: &str,
) -> FailOutcome {
    q.fail(c, consumer, entry, failure, error, retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn park(ms: u64, next_attempt: u32) -> Failure {
    Failure::Retry {
        delay: Duration::from_millis(ms),
        next_attempt,
    }
}

async fn tries_len(c: &mut ConnectionManager) -> (u64, u64) {
    millrace_core::redis::pipe()
        .cmd("HLEN")
        .arg("millrace:{default}:tries")
        .cmd("ZCARD")
        .arg("millrace:{default}:retrying")
        .query_async(c)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn enqueue(url: &str, n: usize) {
    let client = Client::connect(url).await.unwrap_or_else(|e| panic!("{e}"));
    for i in 0..n {
        client
            .enqueue(&probe_job(&format!("p{i}"), 0))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Parked, claimed back with its attempt; crashed; reclaimed by another
/// worker with the same attempt; dead-lettered with it; nothing left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_retry_keeps_its_attempt_through_claim_back_crash_and_dead_letter() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let q = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    enqueue(&url, 1).await;
    let d = read_one(&q, &mut c, "a").await;
    let entry = d.entry_id.clone();
    assert_eq!(
        fail(&q, &mut c, "a", &entry, park(300, 2), "boom: first").await,
        FailOutcome::Retried
    );
    // Parked: not reclaimable by anyone, not due yet, not in flight.
    let r = q
        .reclaim(&mut c, "b", Duration::ZERO, 10, 5, retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.claimed.is_empty(), "a parked retry was reclaimed");
    let due = q
        .due_retries(&mut c, "a", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(due.claimed.is_empty(), "claimed before its backoff");
    let wait = due.next_due_in.unwrap_or_default();
    assert!(
        wait > Duration::from_millis(100) && wait <= Duration::from_millis(300),
        "{wait:?}"
    );
    let stats = inspect::stats(&mut c, &q)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            stats.ready,
            stats.in_flight,
            stats.retrying,
            stats.consumers
        ),
        (0, 0, Some(1), 1),
        "{stats:?}"
    );
    let names: Vec<String> = inspect::consumers(&mut c, &q)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a"], "the parking consumer is not listed");
    let listed = inspect::pending(&mut c, &q, &inspect::PendingFilter::default(), 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(listed.is_empty(), "parked retries listed as pending");
    let delayed = inspect::delayed_page(&mut c, &q, 0, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].run_now_id(), entry);
    assert_eq!(delayed[0].get("attempt"), Some("2"));
    assert_eq!(delayed[0].get("error"), Some("boom: first"));
    // A requeue of stuck entries leaves a parked retry alone.
    let rq = admin::requeue(
        &mut c,
        &q,
        std::slice::from_ref(&entry),
        Duration::ZERO,
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((rq.requeued, rq.skipped), (0, 1));

    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let due = q
        .due_retries(&mut c, "a", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(due.claimed.len(), 1);
    assert_eq!(due.next_due_in, None);
    let again = &due.claimed[0];
    assert_eq!(again.entry_id, entry, "the same entry, never copied");
    let env = envelope(again);
    assert_eq!(
        (env.attempt, env.error.as_deref()),
        (2, Some("boom: first"))
    );
    let pending = inspect::pending(&mut c, &q, &inspect::PendingFilter::default(), 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].deliveries, 1,
        "each attempt counts its own deliveries"
    );
    assert_eq!(
        pending[0].entry.as_ref().and_then(|e| e.get("attempt")),
        Some("2")
    );

    // "a" crashes: "b" reclaims the entry with attempt 2, not 1.
    let r = q
        .reclaim(&mut c, "b", Duration::ZERO, 10, 5, retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.claimed.len(), 1);
    assert_eq!(envelope(&r.claimed[0]).attempt, 2);
    // A late outcome from "a" is fenced off.
    assert_eq!(
        fail(&q, &mut c, "a", &entry, park(10, 3), "late").await,
        FailOutcome::LeaseLost
    );
    assert_eq!(
        fail(&q, &mut c, "b", &entry, Failure::Dead, "boom: last").await,
        FailOutcome::Dead
    );
    let dead = dead_entries(&mut c, "default").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].get("attempt").map(String::as_str), Some("2"));
    assert_eq!(dead[0].get("error").map(String::as_str), Some("boom: last"));
    assert_eq!(
        tries_len(&mut c).await,
        (0, 0),
        "attempt records cleaned up"
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
}

/// A retry with no backoff stays with its worker: found again by a sweep
/// after a reconnect with its attempt, handed back on shutdown with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_in_place_keeps_its_attempt_when_swept_or_handed_back() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let q = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    enqueue(&url, 1).await;
    let d = read_one(&q, &mut c, "a").await;
    let entry = d.entry_id.clone();
    assert_eq!(
        fail(
            &q,
            &mut c,
            "a",
            &entry,
            Failure::Again { next_attempt: 2 },
            "x"
        )
        .await,
        FailOutcome::Retried
    );
    assert_eq!(
        fail(
            &q,
            &mut c,
            "b",
            &entry,
            Failure::Again { next_attempt: 3 },
            "y"
        )
        .await,
        FailOutcome::LeaseLost,
        "fenced"
    );
    let own = q
        .own_entries(&mut c, "a", std::slice::from_ref(&entry), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(own.len(), 1);
    assert_eq!(envelope(&own[0]).attempt, 2);
    assert_eq!(
        fail(
            &q,
            &mut c,
            "a",
            &entry,
            Failure::Again { next_attempt: 3 },
            "z"
        )
        .await,
        FailOutcome::Retried
    );
    let n = q
        .release(&mut c, "a", std::slice::from_ref(&entry), retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1);
    let copy = read_one(&q, &mut c, "b").await;
    assert_ne!(copy.entry_id, entry, "handed back as a new entry");
    let env = envelope(&copy);
    assert_eq!((env.attempt, env.error.as_deref()), (3, Some("z")));
    assert_eq!(tries_len(&mut c).await, (0, 0));
    q.ack(&mut c, std::slice::from_ref(&copy.entry_id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_left(&c, "default", Left::default()).await;
}

/// Many parked retries never crowd out an expired lease: reclaim looks at
/// pending entries consumer by consumer. And run-now makes a parked retry
/// due at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_retries_never_starve_reclaim_and_run_now_makes_them_due() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let q = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    enqueue(&url, 301).await;
    let parked = q
        .read(&mut c, "a", 300, Duration::from_millis(100), &ReadFrom::New)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parked.len(), 300);
    let failed: Vec<FailedEntry> = parked
        .iter()
        .map(|d| FailedEntry::new(d.entry_id.clone(), park(3_600_000, 2), "later"))
        .collect();
    let report = q
        .fail_many(&mut c, "a", &failed, retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.outcomes.iter().all(|o| *o == FailOutcome::Retried));
    // The newest entry is stuck with a crashed consumer "z".
    let stuck = read_one(&q, &mut c, "z").await;
    let r = q
        .reclaim(&mut c, "b", Duration::ZERO, 10, 5, retention())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = r.claimed.iter().map(|d| d.entry_id.as_str()).collect();
    assert_eq!(ids, [stuck.entry_id.as_str()]);
    // Run one parked retry now: it is due at once and claimed back.
    let first = parked[0].entry_id.clone();
    let n = admin::run_now(&mut c, &q, std::slice::from_ref(&first))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1);
    let due = q
        .due_retries(&mut c, "b", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = due.claimed.iter().map(|d| d.entry_id.as_str()).collect();
    assert_eq!(ids, [first.as_str()]);
    assert_eq!(tries_len(&mut c).await, (300, 299));
}

/// End to end with a worker: a job failing with a backoff runs again as
/// the same entry and then succeeds, and the queue is left empty (no
/// attempt record, no parked entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_parked_retries_when_due_and_leaves_nothing_behind() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // A long BLOCK: the parked retry must end the blocked read by itself.
    let mut cfg = fast_config(&url);
    cfg.block = Duration::from_secs(3);
    cfg.promote_every = Duration::from_secs(5);
    let builder = millrace_worker::Worker::builder(cfg)
        .register(move |job: Probe, ctx| probe(job, ctx, tx.clone()));
    let worker = spawn(builder);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&probe_job("twice", 2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no first attempt"));
    let started = std::time::Instant::now();
    let second = tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no second attempt"));
    let took = started.elapsed();
    assert_eq!((first.attempt, second.attempt), (1, 2));
    // Backoff 200 ms; the blocked read (3 s) was ended for it.
    assert!(
        took < Duration::from_millis(1500),
        "second attempt after {took:?}"
    );
    let mut c = conn(&url).await;
    wait_left(&c, "default", Left::default()).await;
    assert_eq!(tries_len(&mut c).await, (0, 0));
    worker.shutdown().await;
}
