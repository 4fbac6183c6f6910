//! Rows the relay cannot deliver, and Redis or Postgres going away.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use millrace::outbox;
use millrace::{EnqueueOptions, JobId};
use millrace_core::{CancellationToken, redis};
use tokio::sync::Mutex;

use crate::common::{Env, Ping, assert_exactly_once, env, env_with, eventually};

#[tokio::test]
async fn a_failing_queue_does_not_block_the_rows_behind_it() {
    let env = env().await;
    // The stream key of queue "broken" holds a string: every XADD to it fails.
    let _: () = redis::cmd("SET")
        .arg("millrace:{broken}:stream")
        .arg("oops")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let mut good = Vec::new();
    let mut broken = Vec::new();
    for n in 0..6 {
        if n % 2 == 0 {
            let id =
                outbox::enqueue_with(&mut tx, &Ping { n }, EnqueueOptions::new().queue("broken"))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            broken.push(id.0);
        } else {
            good.push(
                outbox::enqueue(&mut tx, &Ping { n })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .0,
            );
        }
    }
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));

    let mut relay = env.relay();
    let s = relay.relay_once().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.fetched, s.relayed, s.failed, s.dead), (6, 3, 3, 0));
    assert_exactly_once(&env.jobs_in("outbox"), &good);
    let (attempts, error): (i32, String) = sqlx::query_as(
        "SELECT max(attempts), max(last_error) FROM millrace_outbox WHERE queue = 'broken'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(attempts, 1);
    assert!(error.contains("WRONGTYPE"), "{error}");
    // Backing off: not tried again at once.
    let s = relay.relay_once().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.fetched, 0);
    let status = {
        let mut c = env.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
        millrace_postgres::outbox::status(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!((status.waiting, status.failing, status.dead), (3, 3, 0));

    // Fixed: the rows go through after their backoff (1 s).
    let _: () = redis::cmd("DEL")
        .arg("millrace:{broken}:stream")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.drain().await;
    assert_exactly_once(&env.jobs_in("broken"), &broken);
    assert_eq!(env.outbox_rows().await, 0);
}

#[tokio::test]
async fn a_row_that_can_never_be_delivered_is_kept_dead_and_others_go_on() {
    let env = env().await;
    let id = JobId("dup".into());
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    outbox::enqueue_with(
        &mut tx,
        &Ping { n: 1 },
        EnqueueOptions::new()
            .job_id(id.clone())
            .delay(Duration::from_secs(3600)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    env.drain().await;
    // Another job with the same id, scheduled while the first waits: Redis
    // refuses it, as Client::enqueue_in would.
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    outbox::enqueue_with(
        &mut tx,
        &Ping { n: 2 },
        EnqueueOptions::new()
            .job_id(id)
            .delay(Duration::from_secs(60)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let after = outbox::enqueue(&mut tx, &Ping { n: 3 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    // A raw row with a queue name the Rust check refuses but the table's
    // constraint lets through (a non-ASCII space).
    sqlx::query("INSERT INTO millrace_outbox (queue, name, payload) VALUES ('odd\u{3000}queue', 'ping', '{}')")
        .execute(&env.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let raw_ok: String = sqlx::query_scalar(
        "INSERT INTO millrace_outbox (queue, name, payload) VALUES ('outbox', 'ping', '{\"n\":4}') RETURNING job_id",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let mut relay = env.relay();
    let s = relay.relay_once().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.fetched, s.relayed, s.dead), (4, 2, 2));
    let jobs = env.jobs_in("outbox");
    assert_eq!(jobs.get(&after.0), Some(&1));
    assert_eq!(jobs.get(&raw_ok), Some(&1), "plain SQL rows relay too");
    let problems = {
        let mut c = env.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
        millrace_postgres::outbox::problems(&mut c, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(problems.len(), 2);
    assert!(problems.iter().all(|p| p.dead));
    let errors: Vec<String> = problems
        .iter()
        .filter_map(|p| p.last_error.clone())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("already scheduled")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("invalid queue name")),
        "{errors:?}"
    );
    // Dead rows are skipped from now on.
    assert_eq!(
        relay
            .relay_once()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .fetched,
        0
    );
}

/// Commits one-row transactions until `stop`, recording which surely
/// committed and which may have (the commit's reply was lost).
async fn produce(
    pool: sqlx::PgPool,
    stop: Arc<AtomicBool>,
    sure: Arc<Mutex<Vec<String>>>,
    unsure: Arc<Mutex<Vec<String>>>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let Ok(mut tx) = pool.begin().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(id) = outbox::enqueue(&mut tx, &Ping { n }).await else {
            continue;
        };
        match tx.commit().await {
            Ok(()) => sure.lock().await.push(id.0),
            Err(_) => unsure.lock().await.push(id.0),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Producer {
    stop: Arc<AtomicBool>,
    sure: Arc<Mutex<Vec<String>>>,
    unsure: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Producer {
    fn start(env: &Env) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sure = Arc::new(Mutex::new(Vec::new()));
        let unsure = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(produce(
            env.pool.clone(),
            stop.clone(),
            sure.clone(),
            unsure.clone(),
        ));
        Self {
            stop,
            sure,
            unsure,
            task,
        }
    }

    async fn stop(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_else(|e| panic!("{e}"));
        let sure = self.sure.lock().await.clone();
        let unsure = self.unsure.lock().await.clone();
        (sure, unsure)
    }
}

async fn check_after_outage(env: &Env, sure: &[String], unsure: &[String]) {
    assert!(
        sure.len() > 50,
        "the producer committed only {} jobs",
        sure.len()
    );
    eventually("the outbox to empty", || async {
        env.outbox_rows().await == 0
    })
    .await;
    let jobs = env.jobs_in("outbox");
    let twice: Vec<_> = jobs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "relayed twice: {twice:?}");
    for id in sure {
        assert!(jobs.contains_key(id), "committed job {id} lost");
    }
    let known: HashSet<&String> = sure.iter().chain(unsure).collect();
    for id in jobs.keys() {
        assert!(known.contains(id), "job {id} was never committed");
    }
}

#[tokio::test]
async fn postgres_restarted_mid_relay_loses_nothing_and_duplicates_nothing() {
    let mut env = env().await;
    if env.pg.is_external() {
        return; // cannot restart someone else's server
    }
    let stop_relay = CancellationToken::new();
    let relay_task = tokio::spawn(env.relay().run(stop_relay.clone()));
    let producer = Producer::start(&env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..2 {
        env.pg.kill().unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(700)).await;
        env.pg.start_again().unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (sure, unsure) = producer.stop().await;
    check_after_outage(&env, &sure, &unsure).await;
    stop_relay.cancel();
    relay_task.await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn redis_restarted_mid_relay_loses_nothing_and_duplicates_nothing() {
    let mut env = env_with(millrace_tests::Persistence::AofAlways).await;
    let stop_relay = CancellationToken::new();
    let relay_task = tokio::spawn(env.relay().run(stop_relay.clone()));
    let producer = Producer::start(&env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Redis is gone for a second while commits go on.
    env.redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.redis.restart().unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sure, unsure) = producer.stop().await;
    check_after_outage(&env, &sure, &unsure).await;
    stop_relay.cancel();
    relay_task.await.unwrap_or_else(|e| panic!("{e}"));
}
