//! Unique jobs: one job per key however many producers race; each mode's
//! lock released (or kept) as its job ends; expired locks free their key;
//! `submit_many` with duplicates.

use std::time::Duration;

use millrace::{Client, EnqueueOptions, EnqueueStatus, Enqueued, Unique};
use millrace_core::Conn;
use millrace_core::{Job, Keys, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::common::*;

/// A producer client for `url`.
pub async fn client(url: &str) -> Client {
    Client::connect(url).await.unwrap_or_else(|e| panic!("{e}"))
}

/// The unique locks of queue `default`: key → `<mode>|<job id>`.
pub async fn locks(c: &mut Conn) -> Vec<(String, String)> {
    let k = Keys::new("millrace", "default").unwrap_or_else(|e| panic!("{e}"));
    let mut v: Vec<(String, String)> = millrace_core::redis::cmd("HGETALL")
        .arg(&k.unique)
        .query_async(c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    v.sort();
    v
}

fn with_key(u: impl Into<Unique>) -> EnqueueOptions {
    EnqueueOptions::new().unique(u)
}

/// Enqueues probes with `unique` until one is new (the key was freed);
/// panics after `WAIT`.
async fn until_new(client: &Client, unique: Unique) -> Enqueued {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let e = client
            .submit(&probe_job("again", 1), with_key(unique.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if e.is_new() {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_enqueueing_one_key_make_one_job() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        // A client (connection) each: the calls really race on the server.
        let client = client(&url).await;
        tasks.push(tokio::spawn(async move {
            client
                .submit(&probe_job(&format!("p{i}"), 1), with_key("invoice:42"))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let new: Vec<_> = out.iter().filter(|e| e.is_new()).collect();
    assert_eq!(new.len(), 1, "{out:?}");
    let id = &new[0].id;
    assert!(
        out.iter()
            .filter(|e| !e.is_new())
            .all(|e| e.is_duplicate() && &e.id == id),
        "{out:?}"
    );
    let l = left(&mut c, "default").await;
    assert_eq!(l.stream, 1, "{l:?}");
    assert_eq!(
        locks(&mut c).await,
        [("invoice:42".to_owned(), format!("w|{id}"))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_while_live_key_is_held_until_success_and_dead_letter() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    // Success: a duplicate while it waits, free again once it is acked.
    let first = client
        .submit(&probe_job("ok", 1), with_key("k-ok"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(first.is_new());
    let dup = client
        .submit(&probe_job("ok-again", 1), with_key("k-ok"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dup.status, EnqueueStatus::Duplicate);
    assert_eq!(dup.id, first.id);
    // `enqueue_with` returns the existing job's id for a duplicate.
    let id = client
        .enqueue_with(&probe_job("ok-again", 1), with_key("k-ok"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id, first.id);
    // Dead-letter (permanent error): held until then.
    let mut hopeless = probe_job("dead", 0);
    hopeless.permanent = true;
    client
        .submit(&hopeless, with_key("k-dead"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let mut tags = Vec::new();
    for _ in 0..2 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {tags:?} ran"));
        tags.push(s.tag);
    }
    tags.sort();
    assert_eq!(tags, ["dead", "ok"]);
    let want = Left {
        dead: 1,
        ..Left::default()
    };
    wait_left(&c, "default", want).await;
    eventually("both locks released", || {
        let mut c = c.clone();
        async move { locks(&mut c).await.is_empty() }
    })
    .await;
    for key in ["k-ok", "k-dead"] {
        let again = client
            .submit(&probe_job("again", 1), with_key(key))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(again.is_new(), "{key}: {again:?}");
    }
    worker.shutdown().await;
    assert!(rx.try_recv().is_ok(), "the new jobs ran");
    let _ = left(&mut c, "default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_key_holds_for_its_ttl_after_success() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let window = Duration::from_millis(1500);
    let t0 = server_ms(&mut c).await;
    let first = client
        .submit(
            &probe_job("t1", 1),
            with_key(Unique::throttle("digest", window)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(first.is_new());
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the job did not run"));
    wait_left(&c, "default", Left::default()).await;
    // Succeeded, but the key stays taken for the window.
    let dup = client
        .submit(
            &probe_job("t2", 1),
            with_key(Unique::throttle("digest", window)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(dup.is_duplicate(), "{dup:?}");
    assert_eq!(dup.id, first.id);
    until_new(&client, Unique::throttle("digest", window)).await;
    let waited = server_ms(&mut c).await - t0;
    assert!(waited >= 1500, "free again after {waited} ms");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounce_enqueue_replaces_the_payload_and_pushes_the_job_back() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let k = Keys::new("millrace", "default").unwrap_or_else(|e| panic!("{e}"));
    let window = Duration::from_millis(800);
    let first = client
        .submit(
            &probe_job("a", 1),
            with_key(Unique::debounce("search-index", window)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(first.is_new());
    let due = |c: &mut Conn, id: String| {
        let mut c = c.clone();
        let key = k.delayed.clone();
        async move {
            let s: Option<u64> = millrace_core::redis::cmd("ZSCORE")
                .arg(key)
                .arg(id)
                .query_async(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            s.unwrap_or_else(|| panic!("not delayed"))
        }
    };
    let due1 = due(&mut c, first.id.0.clone()).await;
    // The server clock moves on before the second enqueue.
    let t = server_ms(&mut c).await;
    eventually("a millisecond", || {
        let mut c = c.clone();
        async move { server_ms(&mut c).await > t + 5 }
    })
    .await;
    let second = client
        .submit(
            &probe_job("b", 1),
            with_key(Unique::debounce("search-index", window)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.status, EnqueueStatus::Debounced);
    assert_eq!(second.id, first.id);
    let due2 = due(&mut c, first.id.0.clone()).await;
    assert!(due2 > due1, "pushed back: {due1} -> {due2}");
    let l = left(&mut c, "default").await;
    assert_eq!((l.delayed, l.jobs, l.stream), (1, 1, 0), "{l:?}");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let seen = tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the job did not run"));
    assert_eq!(
        (seen.tag.as_str(), seen.job_id.as_str()),
        ("b", first.id.as_str())
    );
    wait_left(&c, "default", Left::default()).await;
    assert!(rx.try_recv().is_err(), "one job ran, once");
    assert!(locks(&mut c).await.is_empty(), "released on success");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_frees_the_key_when_its_job_never_ends() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let short = Unique::while_live("stuck").ttl(Duration::from_millis(300));
    let q = millrace_core::Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    let t0 = server_ms(&mut c).await;
    let first = client
        .submit(&probe_job("crash", 1), with_key(short.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Its worker "crashes": the entry is read and never acknowledged.
    let got = q
        .read(
            &mut c,
            "gone",
            1,
            Duration::from_millis(50),
            &millrace_core::ReadFrom::New,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), 1);
    let dup = client
        .submit(&probe_job("x", 1), with_key(short.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(dup.is_duplicate(), "{dup:?}");
    let next = until_new(&client, short).await;
    assert!(server_ms(&mut c).await >= t0 + 300, "held its ttl");
    assert_ne!(next.id, first.id);
    assert_eq!(
        locks(&mut c).await,
        [("stuck".to_owned(), format!("w|{}", next.id))]
    );
}

/// A job whose unique key comes from its fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Keyed {
    account: u32,
    n: u32,
}

impl Job for Keyed {
    const NAME: &'static str = "keyed";
    fn retry() -> RetryPolicy {
        RetryPolicy::exponential(1)
    }
    fn unique(&self) -> Option<Unique> {
        Some(Unique::while_live(format!("account:{}", self.account)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_makes_one_job_per_key() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let jobs = [
        Keyed { account: 1, n: 1 },
        Keyed { account: 2, n: 2 },
        Keyed { account: 1, n: 3 },
    ];
    let out = client
        .submit_many(&jobs, EnqueueOptions::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status: Vec<_> = out.iter().map(|e| e.status).collect();
    assert_eq!(
        status,
        [
            EnqueueStatus::New,
            EnqueueStatus::New,
            EnqueueStatus::Duplicate
        ]
    );
    assert_eq!(out[2].id, out[0].id);
    // A second batch: all duplicates, the ids of the live jobs.
    let ids = client
        .enqueue_many(&jobs)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ids,
        [out[0].id.clone(), out[1].id.clone(), out[0].id.clone()]
    );
    assert_eq!(left(&mut c, "default").await.stream, 2);
    // A shared key for a whole batch is refused: it would make one job.
    let err = client
        .enqueue_many_with(&jobs, EnqueueOptions::new().unique("all"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("enqueue_many takes no job_id, delay, at or unique option"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_unique_keys_are_refused_before_anything_is_written() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let err = client
        .submit(&probe_job("x", 1), with_key(""))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "unique key must be 1 to 1024 bytes (got 0)");
    let err = client
        .submit(
            &probe_job("x", 1),
            with_key(Unique::throttle("k", Duration::ZERO)),
        )
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "unique ttl (0ns) must be at least 1ms");
    assert_eq!(left(&mut c, "default").await, Left::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_released_at_max_deliveries_and_expired_ones_are_swept() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let q = millrace_core::Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    client
        .submit(&probe_job("crashes", 1), with_key("k-crash"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let short = Unique::while_live("k-short").ttl(Duration::from_millis(50));
    client
        .submit(&probe_job("short", 1), with_key(short))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Both delivered to a worker that dies.
    let got = q
        .read(
            &mut c,
            "gone",
            2,
            Duration::from_millis(50),
            &millrace_core::ReadFrom::New,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), 2);
    // Past max deliveries: dead-lettered by reclaim, and the lock goes too.
    let r = q
        .reclaim(&mut c, "other", Duration::ZERO, 10, 1, Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.dead, 2);
    assert!(
        locks(&mut c).await.is_empty(),
        "released with the dead-letter"
    );
    // An expired lock nobody enqueues again is dropped by the upkeep tick.
    let id = client
        .enqueue_with(
            &probe_job("held", 1),
            with_key(Unique::while_live("k-held").ttl(Duration::from_millis(50))),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        locks(&mut c).await,
        [("k-held".to_owned(), format!("w|{id}"))]
    );
    let t = server_ms(&mut c).await;
    eventually("the lock to expire", || {
        let mut c = c.clone();
        async move { server_ms(&mut c).await > t + 60 }
    })
    .await;
    q.heartbeat(&mut c, "w1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(locks(&mut c).await.is_empty(), "swept by beat.lua");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_unique_job_whose_id_is_waiting_is_refused() {
    let redis = redis();
    let url = redis.url();
    let client = client(&url).await;
    let later = || {
        EnqueueOptions::new()
            .delay(Duration::from_secs(60))
            .job_id(millrace::JobId("fixed".into()))
    };
    client
        .submit(&probe_job("a", 1), later().unique("k1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = client
        .submit(&probe_job("b", 1), later().unique("k2"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("job id \"fixed\" is already scheduled or retrying in queue \"default\""),
        "{err}"
    );
    let mut c = conn(&url).await;
    assert_eq!(
        locks(&mut c).await.len(),
        1,
        "no lock taken for the refused job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_envelope_that_cannot_be_promoted_releases_its_lock() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let client = client(&url).await;
    let id = client
        .enqueue_with(
            &probe_job("broken", 1),
            with_key("k-broken").delay(Duration::from_millis(1)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(locks(&mut c).await.len(), 1);
    // Damage the stored envelope: still a list naming its key, but with a
    // value that is not a string, so it cannot be re-added.
    let k = Keys::new("millrace", "default").unwrap_or_else(|e| panic!("{e}"));
    let bad = format!(
        r#"["id","{}","unique","k-broken","attempt",1]"#,
        id.as_str()
    );
    let _: () = millrace_core::redis::cmd("HSET")
        .arg(&k.jobs)
        .arg(id.as_str())
        .arg(bad)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let q = millrace_core::Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    let p = q
        .promote(&mut c, 10, millrace_core::DeadRetention::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p.moved, p.dead), (0, 1), "{p:?}");
    assert!(
        locks(&mut c).await.is_empty(),
        "lock released with the dead-letter"
    );
}
