//! Delayed jobs: never early, run once due; concurrent promoters never
//! duplicate or drop a job.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use millrace::Client;
use millrace_core::{Envelope, JobId, Queue, When};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_run_once_due_and_not_before() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c2 = c.clone();
    let builder =
        millrace_worker::Worker::builder(fast_config(&url)).register(move |job: Probe, _ctx| {
            let tx = tx.clone();
            let mut c = c2.clone();
            async move {
                let now = server_ms(&mut c).await;
                let _ = tx.send((job.tag.clone(), now));
                Ok(())
            }
        });
    let worker = spawn(builder);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t0 = server_ms(&mut c).await;
    client
        .enqueue_in(&probe_job("in", 1), Duration::from_millis(700))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let at = SystemTime::now() + Duration::from_millis(1200);
    client
        .enqueue_at(&probe_job("at", 1), at)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&probe_job("now", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let at_ms = millrace_core::queue::unix_ms(at);
    let mut ran = Vec::new();
    for _ in 0..3 {
        let (tag, when) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {ran:?} ran"));
        ran.push((tag, when));
    }
    let order: Vec<&str> = ran.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(order, ["now", "in", "at"]);
    assert!(
        ran[1].1 >= t0 + 700,
        "`in` ran {} ms early",
        t0 + 700 - ran[1].1
    );
    assert!(ran[2].1 >= at_ms, "`at` ran {} ms early", at_ms - ran[2].1);
    // ... and not much later than due (the promoter sleeps until the next due time).
    assert!(
        ran[2].1 < at_ms + 1_000,
        "`at` ran {} ms late",
        ran[2].1 - at_ms
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "no job ran twice");
    assert_eq!(left(&mut c, "default").await, Left::default());
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_promoters_never_duplicate_or_drop() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let queue = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    let n = 3_000;
    let mut ids = HashSet::new();
    for i in 0..n {
        let env = Envelope::new(
            JobId::new().0,
            "probe",
            format!(r#"{{"tag":"p{i}","succeed_on":1}}"#),
        );
        ids.insert(env.id.clone());
        // Due at once, in a spread of the past so several rounds are needed.
        queue
            .schedule(
                &mut c,
                &env,
                When::At(SystemTime::now() - Duration::from_millis(i)),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let queue = queue.clone();
        let mut c = conn(&url).await;
        tasks.push(tokio::spawn(async move {
            let mut moved = 0;
            loop {
                let p = queue
                    .promote(&mut c, 50, Default::default())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                moved += p.moved;
                if p.moved == 0 {
                    return moved;
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(total, n, "the promoters together moved every job once");
    let rows: Vec<(String, std::collections::HashMap<String, String>)> =
        millrace_core::redis::cmd("XRANGE")
            .arg("millrace:{default}:stream")
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let in_stream: Vec<String> = rows.into_iter().map(|(_, f)| f["id"].clone()).collect();
    let distinct: HashSet<String> = in_stream.iter().cloned().collect();
    assert_eq!(in_stream.len(), n as usize, "no duplicates");
    assert_eq!(distinct, ids, "no job dropped");
    let l = left(&mut c, "default").await;
    assert_eq!((l.delayed, l.jobs), (0, 0));
}
