//! A worker whose handler has exactly-once effects in Postgres: each
//! `transfer` job books one ledger row, and a job delivered twice (after a
//! crash, or a lost lease) books it once.
//!
//! ```sh
//! MILLRACE_REDIS_URL=redis://127.0.0.1:6379 \
//! MILLRACE_DATABASE_URL=postgres://app@127.0.0.1/app \
//!   cargo run -p millrace-postgres --example effects_worker
//! ```
//!
//! Optional: `EFFECTS_LEASE_MS` (lease, default 30000), `EFFECTS_RECORD`
//! (a file that gets a line per delivery, for the crash tests). The crash
//! test SIGKILLs it mid-handler over and over and counts ledger rows.

#![allow(clippy::print_stderr, reason = "an example binary")]

use std::io::Write;
use std::time::Duration;

use millrace_core::{Job, JobContext, JobError, RetryPolicy};
use millrace_postgres::effects;
use millrace_worker::{Worker, WorkerConfig};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Moves `cents` into `account`, holding the transaction for `hold_ms`.
#[derive(Debug, Serialize, Deserialize)]
struct Transfer {
    account: i64,
    cents: i64,
    #[serde(default)]
    hold_ms: u64,
}

impl Job for Transfer {
    const NAME: &'static str = "transfer";
    const QUEUE: &'static str = "ledger";
    fn retry() -> RetryPolicy {
        RetryPolicy::exponential(20)
    }
}

async fn transfer(
    job: Transfer,
    ctx: JobContext,
    pool: PgPool,
    record: Option<String>,
) -> Result<(), JobError> {
    if let Some(path) = record {
        // One line per delivery (O_APPEND: survives a SIGKILL).
        let line = format!("{}\n", ctx.job_id);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(JobError::retry)?;
        f.write_all(line.as_bytes()).map_err(JobError::retry)?;
    }
    // The job's effects and its processed-jobs row commit together.
    let Some(mut tx) = effects::begin(&pool, &ctx).await.map_err(JobError::retry)? else {
        return Ok(()); // an earlier delivery committed them
    };
    sqlx::query("INSERT INTO ledger (job_id, account, cents) VALUES ($1, $2, $3)")
        .bind(&ctx.job_id)
        .bind(job.account)
        .bind(job.cents)
        .execute(&mut *tx)
        .await
        .map_err(JobError::retry)?;
    tokio::time::sleep(Duration::from_millis(job.hold_ms / 2)).await;
    tx.commit().await.map_err(JobError::retry)?;
    // A crash here leaves the job unacknowledged: it is delivered again,
    // and the next delivery's `begin` returns None.
    tokio::time::sleep(Duration::from_millis(job.hold_ms / 2)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let redis_url =
        std::env::var("MILLRACE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let database_url = std::env::var("MILLRACE_DATABASE_URL")?;
    let record = std::env::var("EFFECTS_RECORD").ok();
    let lease_ms: u64 = std::env::var("EFFECTS_LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);

    let pool = PgPool::connect(&database_url).await?;
    millrace_postgres::migrate(&pool).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS ledger (job_id text NOT NULL, account bigint NOT NULL, cents bigint NOT NULL)",
    )
    .execute(&pool)
    .await?;

    let mut config = WorkerConfig::new(redis_url);
    config.queues = vec![Transfer::QUEUE.into()];
    config.lease = Duration::from_millis(lease_ms);
    config.renew_every = config.lease / 3;
    config.block = (config.lease / 2).min(Duration::from_secs(2));
    config.reclaim_every = (config.lease / 4).min(Duration::from_secs(5));
    config.concurrency = 8;
    let worker = Worker::builder(config)
        .register(move |job: Transfer, ctx: JobContext| {
            transfer(job, ctx, pool.clone(), record.clone())
        })
        .build()?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    eprintln!("effects_worker: {} running", worker.consumer_name());
    worker.run(stop).await?;
    Ok(())
}
