//! The happy path: enqueue, process, ack, nothing left behind.

use millrace::{Client, EnqueueOptions};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_jobs_leave_nothing_behind() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            client
                .enqueue(&probe_job(&format!("job{i}"), 1))
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {} jobs ran", seen.len()));
        assert_eq!(s.attempt, 1);
        seen.push(s.job_id);
    }
    seen.sort();
    let mut want: Vec<String> = ids.iter().map(|i| i.0.clone()).collect();
    want.sort();
    assert_eq!(seen, want, "each enqueued job ran exactly once");
    let mut c = conn(&url).await;
    wait_left(&c, "default", Left::default()).await;
    let processed: u64 = millrace_core::redis::cmd("HGET")
        .arg("millrace:{default}:stats")
        .arg("processed")
        .query_async(&mut c)
        .await
        .unwrap_or(0);
    assert_eq!(processed, 50);
    let queues: Vec<String> = millrace_core::redis::cmd("SMEMBERS")
        .arg("millrace:queues")
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    assert_eq!(queues, ["default"]);
    let consumer = worker.consumer.clone();
    worker.shutdown().await;
    // A clean shutdown leaves the group without this consumer.
    let consumers: Vec<millrace_core::redis::Value> = millrace_core::redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("millrace:{default}:stream")
        .arg("millrace")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        consumers.is_empty(),
        "consumer {consumer} still in the group after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_and_options_reach_the_handler() {
    let redis = redis();
    let url = redis.url();
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let jobs: Vec<Probe> = (0..300).map(|i| probe_job(&format!("m{i}"), 1)).collect();
    let ids = client
        .enqueue_many(&jobs)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids.len(), 300);
    let traced = client
        .enqueue_with(
            &probe_job("traced", 1),
            EnqueueOptions::new()
                .queue("other")
                .trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = conn(&url).await;
    assert_eq!(
        left(&mut c, "default").await.stream,
        300,
        "all 300 in one stream before any worker"
    );

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = fast_config(&url);
    cfg.queues = vec!["default".into(), "other".into()];
    let worker = spawn(
        millrace_worker::Worker::builder(cfg)
            .register(move |job: Probe, ctx| probe(job, ctx, tx.clone())),
    );
    let mut count = 0;
    let mut trace = None;
    while count < 301 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {count} ran"));
        if s.job_id == traced.0 {
            trace = s.trace.clone();
        }
        count += 1;
    }
    assert_eq!(
        trace.as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "the producer's trace context reaches the handler"
    );
    wait_left(&c, "default", Left::default()).await;
    wait_left(&c, "other", Left::default()).await;
    worker.shutdown().await;
}
