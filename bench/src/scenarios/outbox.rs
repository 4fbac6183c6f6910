//! The Postgres outbox (issue 12): transactional enqueue rate (one job per
//! transaction, from 1 and 8 tasks; and 100 per transaction), the relay's
//! rate draining what they committed, and end to end from commit to
//! handler start with a relay and a worker running, at a fixed offered
//! rate. PostgreSQL is a private server with its durable defaults (fsync
//! on), unless `--database-url` names one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use millrace::{EnqueueOptions, Job, outbox};
use millrace_core::{CancellationToken, JobContext, JobError, Queue};
use millrace_postgres::{Relay, RelayConfig};
use millrace_worker::{Worker, WorkerConfig};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::Bench;
use crate::ceiling::payload_pad;
use crate::probe::Counters;
use crate::stats::{Better, Figures, latency_histogram, quantile_ms};

/// The scenario's job: a sequence number and the usual ~100-byte pad.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OutboxProbe {
    seq: u64,
    pad: String,
}

impl Job for OutboxProbe {
    const NAME: &'static str = "outbox_probe";
}

/// Runs the scenario `b.runs` times.
pub async fn run(b: &Bench, figs: &mut Figures, database_url: Option<&str>) -> anyhow::Result<()> {
    let _server;
    let url = match database_url {
        Some(u) => u.to_owned(),
        None => {
            let server = millrace_tests::PostgresServer::start_local_durable()?;
            let url = server.url();
            _server = server;
            url
        }
    };
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await?;
    millrace_postgres::migrate(&pool).await?;
    let (single, batched, e2e_secs, rate) = if b.quick {
        (200, 2_000, 1.0, 100.0)
    } else {
        (2_000, 50_000, 5.0, 500.0)
    };
    // The physical limit of one job per transaction: the same row size
    // committed into a plain table, no outbox, no trigger.
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_commit_baseline (id bigserial PRIMARY KEY, payload text NOT NULL)")
        .execute(&pool)
        .await?;
    for run in 0..b.runs {
        let t = Instant::now();
        for _ in 0..single {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO bench_commit_baseline (payload) VALUES ($1)")
                .bind(serde_json::to_string(&job(0))?)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        let base = single as f64 / t.elapsed().as_secs_f64();
        figs.add(
            "outbox_baseline_commit_1task",
            "jobs/s",
            Better::Higher,
            None,
            base,
        );
        let q = b.queue("outbox")?;
        let t = Instant::now();
        commit_each(&pool, &q, single, 1).await?;
        let one = single as f64 / t.elapsed().as_secs_f64();
        figs.add(
            "outbox_enqueue_1tx_1task",
            "jobs/s",
            Better::Higher,
            None,
            one,
        );
        let t = Instant::now();
        commit_each(&pool, &q, single, 8).await?;
        let eight = single as f64 / t.elapsed().as_secs_f64();
        figs.add(
            "outbox_enqueue_1tx_8tasks",
            "jobs/s",
            Better::Higher,
            None,
            eight,
        );
        let t = Instant::now();
        commit_batches(&pool, &q, batched, 100, 4).await?;
        let many = batched as f64 / t.elapsed().as_secs_f64();
        figs.add(
            "outbox_enqueue_100tx_4tasks",
            "jobs/s",
            Better::Higher,
            None,
            many,
        );

        // One relay drains everything committed above.
        let total = 2 * single + batched;
        let mut relay = relay(b, &url)?;
        let t = Instant::now();
        let mut relayed = 0;
        loop {
            let s = relay.relay_once().await?;
            relayed += s.relayed as u64;
            if s.fetched == 0 {
                break;
            }
        }
        let relay_rate = relayed as f64 / t.elapsed().as_secs_f64();
        figs.add("outbox_relay", "jobs/s", Better::Higher, None, relay_rate);
        let in_stream = stream_len(b, &q).await?;
        if relayed != total || in_stream != total {
            b.fail(format!(
                "outbox: committed {total}, relayed {relayed}, in the stream {in_stream}"
            ));
        }
        b.probe.drop_queue(q.keys()).await?;

        let (p50, p99, max) = end_to_end(b, &url, &pool, e2e_secs, rate).await?;
        figs.add("outbox_e2e_p50", "ms", Better::Lower, None, p50);
        figs.add("outbox_e2e_p99", "ms", Better::Lower, None, p99);
        figs.add("outbox_e2e_max", "ms", Better::Lower, None, max);
        sqlx::query("TRUNCATE bench_commit_baseline")
            .execute(&pool)
            .await?;
        b.progress(&format!(
            "outbox run {}: enqueue {one:.0}/{eight:.0}/{many:.0} jobs/s (1 per tx, 1 and 8 tasks; 100 per tx), relay {relay_rate:.0} jobs/s, commit to handler p50 {p50:.2} ms p99 {p99:.2} ms",
            run + 1
        ));
    }
    figs.note(
        "outbox_enqueue_1tx_1task",
        "one outbox::enqueue + COMMIT per job, PostgreSQL fsync on",
    );
    figs.note(
        "outbox_relay",
        "one relay, batches of 500, draining the rows committed above",
    );
    figs.note(
        "outbox_e2e_p50",
        format!(
            "one job per transaction at {rate:.0}/s; relay (LISTEN/NOTIFY) + in-process worker"
        ),
    );
    Ok(())
}

fn relay(b: &Bench, database_url: &str) -> anyhow::Result<Relay> {
    let mut c = RelayConfig::default();
    c.prefix = b.prefix.clone();
    c.tls = b.tls.clone();
    Ok(Relay::new(database_url, &b.url, c)?)
}

async fn stream_len(b: &Bench, q: &Queue) -> anyhow::Result<u64> {
    let mut conn = b.probe.conn();
    Ok(redis::cmd("XLEN")
        .arg(&q.keys().stream)
        .query_async(&mut conn)
        .await?)
}

fn job(seq: u64) -> OutboxProbe {
    OutboxProbe {
        seq,
        pad: payload_pad(),
    }
}

/// `n` transactions of one job each, from `tasks` tasks.
async fn commit_each(pool: &PgPool, q: &Queue, n: u64, tasks: u64) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let share = n / tasks + u64::from(t < n % tasks);
        let pool = pool.clone();
        let opts = EnqueueOptions::new().queue(q.name());
        set.spawn(async move {
            for i in 0..share {
                let mut tx = pool.begin().await?;
                outbox::enqueue_with(&mut tx, &job(i), opts.clone()).await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// `n` jobs in transactions of `per_tx`, from `tasks` tasks.
async fn commit_batches(
    pool: &PgPool,
    q: &Queue,
    n: u64,
    per_tx: u64,
    tasks: u64,
) -> anyhow::Result<()> {
    let batch: Arc<Vec<OutboxProbe>> = Arc::new((0..per_tx).map(job).collect());
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let share = n / tasks + u64::from(t < n % tasks);
        let (pool, batch) = (pool.clone(), batch.clone());
        let opts = EnqueueOptions::new().queue(q.name());
        set.spawn(async move {
            let mut left = share;
            while left > 0 {
                let k = left.min(per_tx) as usize;
                let mut tx = pool.begin().await?;
                outbox::enqueue_many_with(&mut tx, &batch[..k], opts.clone()).await?;
                tx.commit().await?;
                left -= k as u64;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// Commit to handler start, one job per transaction at `rate` per second
/// for `secs`: a relay and a worker (this process) run throughout.
async fn end_to_end(
    b: &Bench,
    url: &str,
    pool: &PgPool,
    secs: f64,
    rate: f64,
) -> anyhow::Result<(f64, f64, f64)> {
    let q = b.queue("outbox-e2e")?;
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay(b, url)?.run(stop.clone()));
    let committed: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let started: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let mut config = WorkerConfig::new(b.url.clone());
    config.tls = b.tls.clone();
    config.prefix = b.prefix.clone();
    config.queues = vec![q.name().to_owned()];
    config.concurrency = 64;
    let seen = started.clone();
    let worker = Worker::builder(config)
        .allow_unconsumed_jobs() // probes are relayed to this run's queue
        .register(move |job: OutboxProbe, _ctx: JobContext| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((job.seq, Instant::now()));
                Ok::<(), JobError>(())
            }
        })
        .build()?;
    let worker_task = tokio::spawn(worker.run(stop.clone()));
    b.wait_workers(&q, 1).await?;
    tokio::time::sleep(Duration::from_millis(300)).await; // the relay listens

    let n = (secs * rate) as u64;
    let every = Duration::from_secs_f64(1.0 / rate);
    let t0 = tokio::time::Instant::now();
    let opts = EnqueueOptions::new().queue(q.name());
    for seq in 0..n {
        tokio::time::sleep_until(t0 + every * seq as u32).await;
        let mut tx = pool.begin().await?;
        outbox::enqueue_with(&mut tx, &job(seq), opts.clone()).await?;
        tx.commit().await?;
        committed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(seq, Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len() as u64;
        if done >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("outbox end to end: only {done} of {n} jobs ran");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    relay_task.await?;
    worker_task.await??;
    let committed = std::mem::take(
        &mut *committed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let started = std::mem::take(
        &mut *started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut h = latency_histogram()?;
    for (seq, at) in &started {
        if let Some(c) = committed.get(seq) {
            // A job can start before its commit call returns: count 1 µs.
            let us = at.saturating_duration_since(*c).as_micros().max(1);
            h.record(u64::try_from(us).unwrap_or(u64::MAX))?;
        }
    }
    if started.len() as u64 != n {
        b.fail(format!(
            "outbox end to end: {} starts for {n} jobs",
            started.len()
        ));
    }
    b.check_and_drop(
        &q,
        Counters {
            processed: n,
            ..Counters::default()
        },
        "outbox_e2e",
    )
    .await?;
    Ok((
        quantile_ms(&h, 0.5),
        quantile_ms(&h, 0.99),
        h.max() as f64 / 1000.0,
    ))
}
