//! Partitions: a queue spread over `q#0` … `q#N-1` (or the labels of its
//! stored layout); producers place jobs by
//! key (one key, one partition, in order) or round-robin; workers read the
//! queue and every partition on the queue's slots, fairly, pick up a count
//! set while they run, and keep reading partitions after a count is
//! lowered.

use std::time::Duration;

use millrace::{Client, EnqueueOptions};
use millrace_core::partition::partition_of;
use millrace_core::{Conn, Queue};
use millrace_worker::Worker;

use crate::common::*;

async fn partition(c: &mut Conn, n: u32) {
    Queue::new("default")
        .unwrap_or_else(|e| panic!("{e}"))
        .set_partitions(c, n)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn xlen(c: &mut Conn, queue: &str) -> u64 {
    millrace_core::redis::cmd("XLEN")
        .arg(format!("millrace:{{{queue}}}:stream"))
        .query_async(c)
        .await
        .unwrap_or(0)
}

/// A key that hashes to partition `want` of `n`.
fn key_for(want: u32, n: u32, stem: &str) -> String {
    (0..10_000)
        .map(|i| format!("{stem}-{i}"))
        .find(|k| partition_of(k, n) == want)
        .unwrap_or_else(|| panic!("no key for partition {want}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_jobs_and_a_worker_reads_every_partition() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    partition(&mut c, 4).await;
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..40 {
        client
            .enqueue(&probe_job(&format!("j{i}"), 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for i in 0..4 {
        assert_eq!(
            xlen(&mut c, &format!("default#{i}")).await,
            10,
            "partition {i}"
        );
    }
    assert_eq!(xlen(&mut c, "default").await, 0);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let mut tags = recv_tags(&mut rx, 40).await;
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 40, "each job ran once");
    for i in 0..4 {
        wait_left(&c, &format!("default#{i}"), Left::default()).await;
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_one_key_share_a_partition_and_keep_their_order() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    partition(&mut c, 4).await;
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (key_for(1, 4, "a"), key_for(3, 4, "b"));
    for i in 0..15 {
        for (key, tag) in [(&a, "a"), (&b, "b")] {
            client
                .enqueue_with(
                    &probe_job(&format!("{tag}{i:02}"), 1),
                    EnqueueOptions::new().key(key.clone()),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert_eq!(xlen(&mut c, "default#1").await, 15);
    assert_eq!(xlen(&mut c, "default#3").await, 15);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg.concurrency = 1;
    let worker =
        spawn(Worker::builder(cfg).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let tags = recv_tags(&mut rx, 30).await;
    for stem in ["a", "b"] {
        let mine: Vec<&String> = tags.iter().filter(|t| t.starts_with(stem)).collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted, "jobs of key {stem} ran out of order");
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_partition_starves_behind_a_busy_one() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    partition(&mut c, 2).await;
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (busy, quiet) = (key_for(0, 2, "busy"), key_for(1, 2, "quiet"));
    let flood: Vec<Probe> = (0..300)
        .map(|i| Probe {
            sleep_ms: 10,
            ..probe_job(&format!("busy{i}"), 1)
        })
        .collect();
    client
        .enqueue_many_with(&flood, EnqueueOptions::new().key(busy))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg.concurrency = 4;
    let worker =
        spawn(Worker::builder(cfg).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    recv_tags(&mut rx, 10).await;
    for i in 0..5 {
        client
            .enqueue_with(
                &probe_job(&format!("quiet{i}"), 1),
                EnqueueOptions::new().key(quiet.clone()),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut quiet_seen = 0;
    let mut busy_between = 0;
    while quiet_seen < 5 {
        let t = recv_tags(&mut rx, 1).await.remove(0);
        if t.starts_with("quiet") {
            quiet_seen += 1;
        } else {
            busy_between += 1;
        }
    }
    assert!(
        busy_between < 100,
        "{busy_between} busy jobs ran before the quiet partition's 5"
    );
    assert!(
        xlen(&mut c, "default#0").await > 0,
        "the flood drained: the test proved nothing"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_set_while_running_is_picked_up_and_a_lowered_one_strands_nothing() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    partition(&mut c, 3).await;
    // A new client reads the count at its first enqueue.
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..30 {
        client
            .enqueue(&probe_job(&format!("p{i}"), 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    recv_tags(&mut rx, 30).await;
    worker.shutdown().await;
    // Lowered to 1 with jobs still in the old partitions (no worker ran
    // meanwhile): a worker started afterwards still reads them.
    for i in 0..9 {
        client
            .enqueue(&probe_job(&format!("q{i}"), 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    partition(&mut c, 1).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    recv_tags(&mut rx, 9).await;
    for i in 0..3 {
        wait_left(&c, &format!("default#{i}"), Left::default()).await;
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_partition_counts_and_unique_batches_are_refused() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let q = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    for bad in [0, 257] {
        let err = q.set_partitions(&mut c, bad).await.unwrap_err().to_string();
        assert!(err.contains("invalid partition count"), "{bad}: {err}");
    }
    let part = Queue::new("default#2").unwrap_or_else(|e| panic!("{e}"));
    let err = part
        .set_partitions(&mut c, 2)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a partition"), "{err}");
    // A unique key is unique within one partition: a batch of unique jobs
    // without one key for all is refused, and nothing is enqueued.
    partition(&mut c, 2).await;
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Once(u32);
    impl millrace::Job for Once {
        const NAME: &'static str = "once";
        fn unique(&self) -> Option<millrace::Unique> {
            Some(millrace::Unique::from(format!("once-{}", self.0)))
        }
    }
    let err = client
        .enqueue_many(&[Once(1), Once(2)])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is partitioned"), "{err}");
    for i in 0..2 {
        assert_eq!(xlen(&mut c, &format!("default#{i}")).await, 0);
    }
    // One by one, each goes to its key's partition, and a duplicate is seen.
    let first = client.submit(&Once(7), EnqueueOptions::new()).await;
    let again = client.submit(&Once(7), EnqueueOptions::new()).await;
    let (first, again) = (
        first.unwrap_or_else(|e| panic!("{e}")),
        again.unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(first.id, again.id, "the duplicate was not seen");
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_cancel_and_wait_find_a_job_in_its_partition() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    partition(&mut c, 4).await;
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = key_for(2, 4, "k");
    let on = || EnqueueOptions::new().key(key.clone());
    let a = client
        .enqueue_with(&probe_job("a", 1), on())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = client
        .enqueue_with(&probe_job("b", 1), on())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(xlen(&mut c, "default#2").await, 2);
    let st = client
        .status("default", &a.0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.name(), "queued", "{st:?}");
    let cancelled = client
        .cancel("default", &a.0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(cancelled, millrace::Cancel::Ready { .. }),
        "{cancelled:?}"
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let done: Option<()> = client
        .wait("default", &b.0, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done, None, "a probe has no result");
    let st = client
        .status("default", &b.0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.name(), "succeeded", "{st:?}");
    worker.shutdown().await;
}

/// A layout whose labels are not `0..N` (as `set_partitions` picks on a
/// cluster): producers place by position in it, status finds jobs there,
/// a worker reads exactly those partitions; a stored value that does not
/// parse reads as unpartitioned; on one server the count is stored plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_layout_is_followed_by_producers_workers_and_status() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let q = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    let plain = q
        .set_partitions(&mut c, 3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.labels(), &[0, 1, 2]);
    let stored: String = millrace_core::redis::cmd("GET")
        .arg(&q.keys().partitions)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored, "3");
    for bad in ["1,1", "x", "0"] {
        let _: () = millrace_core::redis::cmd("SET")
            .arg(&q.keys().partitions)
            .arg(bad)
            .query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            q.layout(&mut c).await.ok().map(|l| l.count()),
            Some(1),
            "{bad}"
        );
    }
    let _: () = millrace_core::redis::cmd("SET")
        .arg(&q.keys().partitions)
        .arg("5,17,3")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Position 1 of 3 is label 17.
    let key = key_for(1, 3, "k");
    let id = client
        .enqueue_with(&probe_job("keyed", 1), EnqueueOptions::new().key(key))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(xlen(&mut c, "default#17").await, 1);
    for i in 0..9 {
        client
            .enqueue(&probe_job(&format!("r{i}"), 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for label in [5, 3] {
        assert_eq!(xlen(&mut c, &format!("default#{label}")).await, 3);
    }
    assert_eq!(xlen(&mut c, "default#17").await, 4);
    for label in [0, 1, 2] {
        assert_eq!(xlen(&mut c, &format!("default#{label}")).await, 0);
    }
    let st = client
        .status("default", &id.0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.name(), "queued", "{st:?}");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let mut tags = recv_tags(&mut rx, 10).await;
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 10, "each job ran once");
    worker.shutdown().await;
}
