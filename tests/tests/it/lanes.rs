//! Priority lanes: a worker serves `high` before `default` before `low`
//! (strictly, or weighted), retries and delays stay in their lane, a lane
//! started while the worker runs is picked up, and an expired lease in a
//! lane is reclaimed from that lane.

use std::time::Duration;

use millrace::{Client, EnqueueOptions, Priority};
use millrace_core::{Conn, Keys, Queue};
use millrace_worker::{LaneWeights, Worker};

use crate::common::*;

/// Runs `n` probes on `queue`'s lane `p`, tagged `<p><i>`.
async fn enqueue_lane(client: &Client, p: Priority, n: usize, sleep_ms: u64) {
    let jobs: Vec<Probe> = (0..n)
        .map(|i| Probe {
            sleep_ms,
            ..probe_job(&format!("{p}{i}"), 1)
        })
        .collect();
    client
        .enqueue_many_with(&jobs, EnqueueOptions::new().priority(p))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Every lane of `queue` is empty: no entry, nothing pending or delayed.
async fn lanes_empty(c: &Conn, queue: &str) {
    let k = Keys::new("millrace", queue).unwrap_or_else(|e| panic!("{e}"));
    eventually("every lane to be empty", || {
        let mut c = c.clone();
        let k = k.clone();
        async move {
            let mut total = 0u64;
            for p in Priority::ALL {
                let l = k.for_lane(p);
                let (len, delayed): (u64, u64) = millrace_core::redis::pipe()
                    .cmd("XLEN")
                    .arg(&l.stream)
                    .cmd("ZCARD")
                    .arg(&l.delayed)
                    .query_async(&mut c)
                    .await
                    .unwrap_or((1, 1));
                total += len + delayed;
            }
            total == 0
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_runs_before_default_before_low() {
    let redis = redis();
    let url = redis.url();
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Queued before any worker runs, lowest first.
    enqueue_lane(&client, Priority::Low, 20, 0).await;
    enqueue_lane(&client, Priority::Default, 20, 0).await;
    enqueue_lane(&client, Priority::High, 20, 0).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg.concurrency = 1;
    let worker =
        spawn(Worker::builder(cfg).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let tags = recv_tags(&mut rx, 60).await;
    let lane_of = |t: &String| t.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned();
    let lanes: Vec<String> = tags.iter().map(lane_of).collect();
    let mut want = vec!["high".to_owned(); 20];
    want.extend(vec!["default".to_owned(); 20]);
    want.extend(vec!["low".to_owned(); 20]);
    assert_eq!(lanes, want, "served out of priority order: {tags:?}");
    let c = conn(&url).await;
    lanes_empty(&c, "default").await;
    let mut c2 = c.clone();
    let processed: u64 = millrace_core::redis::cmd("HGET")
        .arg("millrace:{default}:stats")
        .arg("processed")
        .query_async(&mut c2)
        .await
        .unwrap_or(0);
    assert_eq!(processed, 60, "one stats hash counts every lane");
    worker.shutdown().await;
    // A clean shutdown leaves every lane's group.
    for p in Priority::ALL {
        let stream = Keys::new("millrace", "default")
            .unwrap_or_else(|e| panic!("{e}"))
            .for_lane(p)
            .stream;
        let consumers: Vec<millrace_core::redis::Value> = millrace_core::redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&stream)
            .arg("millrace")
            .query_async(&mut c2)
            .await
            .unwrap_or_else(|e| panic!("{stream}: {e}"));
        assert!(consumers.is_empty(), "{stream}: consumer left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_started_while_running_is_read_and_overtakes_a_flood() {
    let redis = redis();
    let url = redis.url();
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg.concurrency = 2;
    // The worker starts on a queue that has no lane but `default`.
    let worker =
        spawn(Worker::builder(cfg).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    enqueue_lane(&client, Priority::Low, 300, 10).await;
    // Some low jobs run; then a high one arrives, in a lane new to the worker.
    let first = recv_tags(&mut rx, 5).await;
    assert!(first.iter().all(|t| t.starts_with("low")), "{first:?}");
    enqueue_lane(&client, Priority::High, 1, 0).await;
    let mut before = 0;
    loop {
        let t = recv_tags(&mut rx, 1).await.remove(0);
        if t == "high0" {
            break;
        }
        before += 1;
    }
    // Found at the next reclaim round (300 ms here: about 60 low jobs of
    // 10 ms on 2 slots), then served at once.
    assert!(
        before < 150,
        "{before} low jobs ran before the high one: not served first"
    );
    let mut c = conn(&url).await;
    let low_left: u64 = millrace_core::redis::cmd("XLEN")
        .arg("millrace:{default}:low:stream")
        .query_async(&mut c)
        .await
        .unwrap_or(0);
    assert!(
        low_left > 0,
        "the low flood was already drained: the test proved nothing"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_delayed_jobs_stay_in_their_lane() {
    let redis = redis();
    let url = redis.url();
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = conn(&url).await;
    // A delayed high job waits in the high lane's delayed set.
    client
        .enqueue_with(
            &probe_job("later", 1),
            EnqueueOptions::new()
                .priority(Priority::High)
                .delay(Duration::from_millis(300)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waiting: u64 = millrace_core::redis::cmd("ZCARD")
        .arg("millrace:{default}:high:delayed")
        .query_async(&mut c)
        .await
        .unwrap_or(0);
    assert_eq!(waiting, 1, "the delayed high job is not in its lane's set");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    // A low job that fails once: its retry waits in the low lane.
    client
        .enqueue_with(
            &probe_job("flaky", 2),
            EnqueueOptions::new().priority(Priority::Low),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only saw {seen:?}"));
        seen.push((s.tag, s.attempt));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("flaky".to_owned(), 1),
            ("flaky".to_owned(), 2),
            ("later".to_owned(), 1)
        ]
    );
    lanes_empty(&c, "default").await;
    // Nothing ever went through the default lane.
    let default_len: u64 = millrace_core::redis::cmd("XLEN")
        .arg("millrace:{default}:stream")
        .query_async(&mut c)
        .await
        .unwrap_or(0);
    assert_eq!(default_len, 0);
    let retried: u64 = millrace_core::redis::cmd("HGET")
        .arg("millrace:{default}:stats")
        .arg("retried")
        .query_async(&mut c)
        .await
        .unwrap_or(0);
    assert_eq!(retried, 1);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_order_serves_low_under_a_high_flood() {
    let redis = redis();
    let url = redis.url();
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    enqueue_lane(&client, Priority::High, 60, 0).await;
    enqueue_lane(&client, Priority::Low, 60, 0).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg.concurrency = 1;
    cfg.lane_weights = Some("1,1,1".parse().unwrap_or_else(|e| panic!("{e}")));
    let worker =
        spawn(Worker::builder(cfg).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let tags = recv_tags(&mut rx, 40).await;
    let low = tags.iter().filter(|t| t.starts_with("low")).count();
    // Strict order would run 40 high jobs here; with equal weights about
    // half the reads start with low (fewer than 8 of 40 has odds < 1e-5).
    assert!(low >= 8, "only {low} low jobs of the first 40: {tags:?}");
    worker.shutdown().await;
}

#[test]
fn lane_weights_parse_or_say_why() {
    let w: LaneWeights = "6, 3, 1".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((w.high, w.default, w.low), (6, 3, 1));
    for bad in ["6,3", "a,b,c", "0,0,0", "1,2,3,4", "-1,2,3"] {
        let err = bad.parse::<LaneWeights>().unwrap_err().to_string();
        assert!(err.contains("invalid lane weights"), "{bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_in_a_lane_is_reclaimed_there() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let high = Queue::new("default")
        .unwrap_or_else(|e| panic!("{e}"))
        .lane(Priority::High);
    high.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    // A consumer that died holding a high job.
    let mut env = millrace_core::Envelope::new(
        "held-1".into(),
        "probe",
        serde_json::to_string(&probe_job("held", 1)).unwrap_or_default(),
    );
    env.priority = Priority::High;
    let d = held_by(&mut c, &high, "gone", env).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg = cfg.with_lease(Duration::from_millis(600), None, None);
    let worker =
        spawn(Worker::builder(cfg).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let s = tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the held high job {} was never reclaimed", d.entry_id));
    assert_eq!(s.tag, "held");
    lanes_empty(&c, "default").await;
    worker.shutdown().await;
}

async fn xread_calls(c: &mut Conn) -> u64 {
    let info: String = millrace_core::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(c)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_xread:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// An idle worker's wait across lanes blocks: a job running in one lane
/// (its entry still in the stream) must not make the wait return at once
/// over and over, in strict or weighted order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_wait_across_lanes_blocks_while_a_job_runs() {
    for weights in [None, Some("1,1,1")] {
        let redis = redis();
        let url = redis.url();
        let client = Client::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Three lanes in use; one long job in `high`.
        // (Apart in time: entry ids of different streams differ.)
        enqueue_lane(&client, Priority::Low, 1, 0).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        enqueue_lane(&client, Priority::Default, 1, 0).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        enqueue_lane(&client, Priority::High, 1, 2_500).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut cfg = fast_config(&url);
        cfg.lane_weights = weights.map(|w| w.parse().unwrap_or_else(|e| panic!("{e}")));
        let worker = spawn(
            Worker::builder(cfg).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())),
        );
        recv_tags(&mut rx, 3).await;
        let mut c = conn(&url).await;
        let before = xread_calls(&mut c).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let calls = xread_calls(&mut c).await - before;
        // BLOCK is 500 ms here (and a reclaim round every 300 ms ends a
        // wait early): a handful of waits a second, not a spin.
        assert!(
            calls <= 8,
            "{calls} waits in 1 s with weights {weights:?}: the wait spins"
        );
        worker.shutdown().await;
    }
}

/// Entry ids are unique per stream only: a cancel mark on an entry of one
/// lane never cancels the entry with the same id in another lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_mark_stays_in_its_lane() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let base = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    for (p, job) in [(Priority::Default, "job-d"), (Priority::High, "job-h")] {
        let lane = base.lane(p);
        lane.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
        let _: String = millrace_core::redis::cmd("XADD")
            .arg(&lane.keys().stream)
            .arg("1-1")
            .arg("id")
            .arg(job)
            .arg("name")
            .arg("probe")
            .arg("payload")
            .arg("{}")
            .query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = lane
            .read(
                &mut c,
                "w",
                1,
                Duration::from_millis(10),
                &millrace_core::ReadFrom::New,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 1);
    }
    let cancel = base
        .cancel(&mut c, "job-h")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(cancel, millrace::Cancel::Running { .. }),
        "{cancel:?}"
    );
    let ids = ["1-1".to_owned()];
    let default = base
        .lane(Priority::Default)
        .renew_leases(&mut c, "w", &ids)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        default.cancel.is_empty(),
        "the default lane's 1-1 was cancelled too"
    );
    let high = base
        .lane(Priority::High)
        .renew_leases(&mut c, "w", &ids)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(high.cancel, ids, "the high lane's 1-1 lost its mark");
}

/// A job written through a lane view carries that lane in its `priority`
/// field, whatever the envelope said, so a dead-letter replay finds the
/// lane again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_view_stamps_its_lane_on_the_job() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let low = Queue::new("default")
        .unwrap_or_else(|e| panic!("{e}"))
        .lane(Priority::Low);
    let env = millrace_core::Envelope::new("j-low".into(), "probe", "{}".into());
    low.enqueue(&mut c, std::slice::from_ref(&env))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut later = env;
    later.id = "j-later".into();
    low.schedule(
        &mut c,
        &later,
        millrace_core::When::In(Duration::from_secs(60)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<(String, std::collections::HashMap<String, String>)> =
        millrace_core::redis::cmd("XRANGE")
            .arg(&low.keys().stream)
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows[0].1.get("priority").map(String::as_str), Some("low"));
    let stored: String = millrace_core::redis::cmd("HGET")
        .arg(&low.keys().jobs)
        .arg("j-later")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stored.contains("\"low\""), "{stored}");
}
