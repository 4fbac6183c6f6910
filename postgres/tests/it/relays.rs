//! Several relays at once, and a job from commit to handler.

use std::time::{Duration, Instant};

use millrace::outbox;
use millrace_core::{CancellationToken, JobContext, JobError};
use millrace_worker::{Worker, WorkerConfig};

use crate::common::{Ping, assert_exactly_once, env, eventually};

async fn many_relays_at_once(relays: usize) {
    let env = env().await;
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..relays {
        let mut c = env.config();
        c.batch = 50; // many small batches: the relays contend for rows
        tasks.push(tokio::spawn(env.relay_with(c).run(stop.clone())));
    }
    // Producers commit (and roll back) while the relays run.
    let mut committed = Vec::new();
    let mut n = 0;
    for round in 0..120 {
        let size = 1 + (round * 7) % 40;
        let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let mut ids = Vec::new();
        for _ in 0..size {
            n += 1;
            ids.push(
                outbox::enqueue(&mut tx, &Ping { n })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .0,
            );
        }
        if round % 5 == 4 {
            tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
        } else {
            tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
            committed.extend(ids);
        }
    }
    eventually("the outbox to empty", || async {
        env.outbox_rows().await == 0
    })
    .await;
    stop.cancel();
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(committed.len() > 1500, "{}", committed.len());
    assert_exactly_once(&env.jobs_in("outbox"), &committed);
    assert_eq!(env.marks("outbox"), 0);
}

#[tokio::test]
async fn two_relays_at_once_relay_each_row_exactly_once() {
    many_relays_at_once(2).await;
}

#[tokio::test]
async fn three_relays_at_once_relay_each_row_exactly_once() {
    many_relays_at_once(3).await;
}

#[tokio::test]
async fn a_committed_job_reaches_its_handler_within_milliseconds() {
    let env = env().await;
    let stop = CancellationToken::new();
    // A long poll: only NOTIFY can make this fast.
    let mut c = env.config();
    c.poll_every = Duration::from_secs(30);
    let relay = tokio::spawn(env.relay_with(c).run(stop.clone()));
    let (tx_done, mut done) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let mut config = WorkerConfig::new(env.redis.url());
    config.queues = vec!["outbox".into()];
    config.block = Duration::from_millis(500);
    let worker = Worker::builder(config)
        .register(move |job: Ping, _ctx: JobContext| {
            let tx_done = tx_done.clone();
            async move {
                let _ = tx_done.send((job.n, Instant::now()));
                Ok::<(), JobError>(())
            }
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let worker = tokio::spawn(worker.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await; // relay listening, worker reading

    let mut worst = Duration::ZERO;
    for n in 0..5 {
        let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        outbox::enqueue(&mut tx, &Ping { n })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        let committed = Instant::now();
        let (got, at) = tokio::time::timeout(Duration::from_secs(10), done.recv())
            .await
            .unwrap_or_else(|_| panic!("job {n} did not run"))
            .unwrap_or_else(|| panic!("channel closed"));
        assert_eq!(got, n);
        worst = worst.max(at - committed);
    }
    assert!(
        worst < Duration::from_secs(2),
        "commit to handler took {worst:?}: NOTIFY did not wake the relay"
    );
    stop.cancel();
    relay.await.unwrap_or_else(|e| panic!("{e}"));
    let _ = worker.await;
}
