//! Transactional enqueue (feature `postgres`): jobs written into the
//! outbox table inside the caller's `sqlx` transaction. Rolled back: no
//! job, ever. Committed: exactly one job, always — the relay
//! (`millrace-worker --database-url`, or `millrace relay`) moves it to its
//! queue, exactly once, usually within milliseconds of the commit.
//!
//! The same jobs and [`EnqueueOptions`] as [`Client`](crate::Client), checked the
//! same way before anything is written: a payload that does not serialize,
//! an invalid queue name or an oversized payload is an error here, inside
//! the transaction, never a row that blocks the relay.
//!
//! ```no_run
//! use millrace::{Job, outbox};
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendInvoice { invoice_id: i64 }
//! impl Job for SendInvoice { const NAME: &'static str = "send_invoice"; }
//!
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! millrace::outbox::migrate(&pool).await?; // once, at deploy
//! let mut tx = pool.begin().await?;
//! let id: i64 = sqlx::query_scalar("INSERT INTO invoices (total) VALUES (42) RETURNING id")
//!     .fetch_one(&mut *tx).await?;
//! outbox::enqueue(&mut tx, &SendInvoice { invoice_id: id }).await?;
//! tx.commit().await?; // the job exists from here on, exactly once
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime};

use millrace_core::keys::validate_queue_name;
use millrace_core::{ConfigError, Job, JobId};
use millrace_postgres::outbox::{NewJob, Schedule};
use sqlx::{Postgres, Transaction};

use crate::client::DEFAULT_MAX_PAYLOAD;
use crate::options::EnqueueOptions;
use crate::prepare::{Invalid, prepare};

pub use millrace_postgres::migrate;

/// Why an outbox enqueue failed. Nothing was written when this is returned
/// (the transaction is still the caller's to commit or roll back).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The job could not be serialized to JSON.
    #[error("cannot serialize job `{job}`: {source}")]
    Serialize {
        /// The job's name.
        job: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The payload is larger than the limit.
    #[error("payload too large: {size} bytes > {limit} bytes limit (job `{job}`)")]
    PayloadTooLarge {
        /// The job's name.
        job: &'static str,
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An option or name is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database refused the insert (or the outbox table is missing:
    /// run [`migrate`]).
    #[error("outbox insert failed: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<Invalid> for OutboxError {
    fn from(e: Invalid) -> Self {
        match e {
            Invalid::Serialize { job, source } => Self::Serialize { job, source },
            Invalid::TooLarge { job, size, limit } => Self::PayloadTooLarge { job, size, limit },
            Invalid::Config(e) => Self::Config(e),
        }
    }
}

/// Transactional enqueue with settings: the payload limit (1 MiB by
/// default, as [`ClientBuilder::max_payload`](crate::ClientBuilder::max_payload)).
/// The free functions of this module use the defaults.
#[derive(Debug, Clone, Copy)]
pub struct Outbox {
    max_payload: usize,
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

impl Outbox {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest payload accepted. Defaults to 1 MiB; at most 16 MiB (the
    /// table's own limit).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes.min(16 << 20);
        self
    }

    /// Writes `job` with `options` into the outbox in `tx`; returns its id.
    pub async fn enqueue_with<J: Job>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<JobId, OutboxError> {
        let (id, row) = self.row(job, &options)?;
        millrace_postgres::outbox::insert(tx, std::slice::from_ref(&row)).await?;
        Ok(id)
    }

    /// Writes many jobs of one type with shared `options` in one
    /// statement; returns their ids in order. As with
    /// [`Client::enqueue_many_with`](crate::Client::enqueue_many_with), the
    /// `job_id`, `delay` and `at` options are refused.
    pub async fn enqueue_many_with<J: Job>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        jobs: &[J],
        options: EnqueueOptions,
    ) -> Result<Vec<JobId>, OutboxError> {
        if options.job_id.is_some() || options.delay.is_some() || options.at.is_some() {
            return Err(ConfigError::Invalid(
                "enqueue_many takes no job_id, delay or at option: enqueue such jobs one by one"
                    .into(),
            )
            .into());
        }
        let mut ids = Vec::with_capacity(jobs.len());
        let mut rows = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (id, row) = self.row(job, &options)?;
            ids.push(id);
            rows.push(row);
        }
        millrace_postgres::outbox::insert(tx, &rows).await?;
        Ok(ids)
    }

    fn row<J: Job>(
        &self,
        job: &J,
        options: &EnqueueOptions,
    ) -> Result<(JobId, NewJob), OutboxError> {
        let queue = options.queue.as_deref().unwrap_or(J::QUEUE);
        validate_queue_name(queue)?;
        if options.unique.is_some() || job.unique().is_some() {
            return Err(ConfigError::Invalid(format!(
                "job `{}` has a unique key: the outbox does not take unique jobs yet; enqueue it with Client",
                J::NAME
            ))
            .into());
        }
        let p = prepare(job, options, self.max_payload)?;
        let mut row = NewJob::new(
            queue.to_owned(),
            p.id.0.clone(),
            J::NAME.to_owned(),
            p.payload,
        );
        row.max_attempts = Some(p.max_attempts);
        row.trace = p.trace;
        row.schedule = match (options.delay, options.at) {
            (Some(d), _) => Schedule::In(d),
            (None, Some(t)) => Schedule::At(t),
            (None, None) => Schedule::Now,
        };
        Ok((p.id, row))
    }
}

/// Writes `job` into the outbox in `tx` (its queue, its defaults); returns
/// its id. The job exists once `tx` commits, and never if it rolls back.
pub async fn enqueue<J: Job>(
    tx: &mut Transaction<'_, Postgres>,
    job: &J,
) -> Result<JobId, OutboxError> {
    Outbox::new()
        .enqueue_with(tx, job, EnqueueOptions::new())
        .await
}

/// [`enqueue`] with `options` (queue, attempts, job id, trace, delay).
pub async fn enqueue_with<J: Job>(
    tx: &mut Transaction<'_, Postgres>,
    job: &J,
    options: EnqueueOptions,
) -> Result<JobId, OutboxError> {
    Outbox::new().enqueue_with(tx, job, options).await
}

/// [`enqueue`] to run `delay` after the row's INSERT (the database's clock).
pub async fn enqueue_in<J: Job>(
    tx: &mut Transaction<'_, Postgres>,
    job: &J,
    delay: Duration,
) -> Result<JobId, OutboxError> {
    Outbox::new()
        .enqueue_with(tx, job, EnqueueOptions::new().delay(delay))
        .await
}

/// [`enqueue`] to run at `at`.
pub async fn enqueue_at<J: Job>(
    tx: &mut Transaction<'_, Postgres>,
    job: &J,
    at: SystemTime,
) -> Result<JobId, OutboxError> {
    Outbox::new()
        .enqueue_with(tx, job, EnqueueOptions::new().at(at))
        .await
}

/// Writes many jobs of one type in one statement; returns their ids.
pub async fn enqueue_many<J: Job>(
    tx: &mut Transaction<'_, Postgres>,
    jobs: &[J],
) -> Result<Vec<JobId>, OutboxError> {
    Outbox::new()
        .enqueue_many_with(tx, jobs, EnqueueOptions::new())
        .await
}

/// [`enqueue_many`] with shared `options` (no `job_id`, `delay` or `at`).
pub async fn enqueue_many_with<J: Job>(
    tx: &mut Transaction<'_, Postgres>,
    jobs: &[J],
    options: EnqueueOptions,
) -> Result<Vec<JobId>, OutboxError> {
    Outbox::new().enqueue_many_with(tx, jobs, options).await
}
