//! Exactly-once effects for handlers whose effects live in Postgres.
//!
//! Delivery is at least once: after a crash or a lost lease a job can run
//! again. [`begin`] opens a transaction that first claims the job in
//! `millrace_processed_jobs` (keyed by queue and job id); the handler does
//! its writes in it and commits. A second delivery finds the row and gets
//! `None`: nothing to do, so nothing is committed twice. Two deliveries
//! running at once serialize on the row: the second waits for the first
//! to commit (then gets `None`) or roll back (then goes ahead).
//!
//! ```no_run
//! # use millrace_core::{JobContext, JobError};
//! # async fn handler(pool: sqlx::PgPool, ctx: JobContext) -> Result<(), JobError> {
//! let Some(mut tx) = millrace_postgres::effects::begin(&pool, &ctx).await.map_err(JobError::retry)? else {
//!     return Ok(()); // an earlier delivery committed this job's effects
//! };
//! sqlx::query("UPDATE accounts SET balance = balance + 10 WHERE id = 1")
//!     .execute(&mut *tx)
//!     .await
//!     .map_err(JobError::retry)?;
//! tx.commit().await.map_err(JobError::retry)?;
//! # Ok(()) }
//! ```
//!
//! Two jobs that share a job id in one queue are one job to this helper.
//! Rows older than the retention are deleted by [`purge`] (the relay runs
//! it hourly); keep the retention longer than a job can be re-delivered
//! (its retries, and a dead-letter replay).

use std::time::Duration;

use millrace_core::JobContext;
use sqlx::{PgPool, Postgres, Transaction};

/// Default retention of processed-jobs rows: 14 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// Begins the job's effects transaction: `Some(tx)` with the job claimed in
/// it (commit `tx` with the handler's writes), or `None` when an earlier
/// delivery already committed them.
pub async fn begin(
    pool: &PgPool,
    ctx: &JobContext,
) -> Result<Option<Transaction<'static, Postgres>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if claim(&mut tx, &ctx.queue, &ctx.job_id).await? {
        Ok(Some(tx))
    } else {
        tx.rollback().await?;
        Ok(None)
    }
}

/// Claims job `job_id` of `queue` in the caller's transaction: true when
/// this transaction is the first to (it then owns the job's effects), false
/// when a committed transaction already did.
pub async fn claim(
    conn: &mut sqlx::PgConnection,
    queue: &str,
    job_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO millrace_processed_jobs (queue, job_id) VALUES ($1, $2)
         ON CONFLICT (queue, job_id) DO NOTHING",
    )
    .bind(queue)
    .bind(job_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// True when the job's effects were committed.
pub async fn is_processed(pool: &PgPool, queue: &str, job_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM millrace_processed_jobs WHERE queue = $1 AND job_id = $2)",
    )
    .bind(queue)
    .bind(job_id)
    .fetch_one(pool)
    .await
}

/// Deletes processed-jobs rows older than `older_than`, in batches of
/// 10,000; returns how many.
pub async fn purge(pool: &PgPool, older_than: Duration) -> Result<u64, sqlx::Error> {
    let secs = older_than.as_secs_f64();
    let mut total = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM millrace_processed_jobs WHERE ctid IN (
                 SELECT ctid FROM millrace_processed_jobs
                 WHERE processed_at < now() - $1 * interval '1 second' LIMIT 10000)",
        )
        .bind(secs)
        .execute(pool)
        .await?;
        total += done.rows_affected();
        if done.rows_affected() < 10_000 {
            return Ok(total);
        }
    }
}
