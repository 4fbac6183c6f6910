//! A job's status and result, read by its id: [`Client::status`],
//! [`Client::result`] and [`Client::wait`] (the rare request/response
//! need). They share the client's one multiplexed connection.

use std::time::{Duration, Instant};

use millrace_core::history::find_finished;
use millrace_core::status::{result_json, status};
use millrace_core::{ConfigError, JobStatus, Queue, QueueError};
use serde::de::DeserializeOwned;

use crate::client::Client;

/// First pause between two looks of [`Client::wait`]; it grows by half at
/// each look, up to [`WAIT_POLL_MAX`].
const WAIT_POLL_FIRST: Duration = Duration::from_millis(10);
/// Longest pause between two looks of [`Client::wait`].
const WAIT_POLL_MAX: Duration = Duration::from_millis(500);

/// Why a status, result or wait call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The queue name is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] QueueError),
    /// The stored result is not a `T`.
    #[error("result of job {job_id} cannot be decoded as {ty}: {source}")]
    Decode {
        /// The job id.
        job_id: String,
        /// The type asked for.
        ty: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The job was dead-lettered ([`Client::wait`]).
    #[error("job {job_id} is dead: {error}")]
    Dead {
        /// The job id.
        job_id: String,
        /// Its last error.
        error: String,
    },
    /// The job was cancelled ([`Client::wait`]).
    #[error("job {job_id} was cancelled")]
    Cancelled {
        /// The job id.
        job_id: String,
    },
    /// The job did not finish in time ([`Client::wait`]); it may still.
    #[error("job {job_id} did not finish within {timeout:?} (it is {})", status.name())]
    Timeout {
        /// The job id.
        job_id: String,
        /// How long it was waited for.
        timeout: Duration,
        /// Its status when the wait ended (boxed: it is large).
        status: Box<JobStatus>,
    },
}

impl Client {
    /// `queue` and its partitions, if it has some: where one of its jobs
    /// may be.
    async fn partitions_of(&self, queue: &str) -> Result<Vec<Queue>, ResultError> {
        let base = Queue::with_prefix(&self.prefix, queue)?;
        let layout = if millrace_core::partition::split_name(queue).1.is_some() {
            millrace_core::partition::Layout::single()
        } else {
            base.layout(&mut self.conn.clone()).await?
        };
        let mut all = vec![base.clone()];
        if layout.is_partitioned() {
            for &label in layout.labels() {
                all.push(base.partition(label)?);
            }
        }
        Ok(all)
    }

    /// Where job `job_id` of `queue` is: queued, scheduled, running,
    /// retrying, succeeded, dead, cancelled or unknown. Finished jobs are
    /// found in the queue's history (kept by the workers for a bounded
    /// count and age, see the README); a running or queued one costs a scan
    /// of the queue's unfinished entries (`millrace_core::status`).
    pub async fn status(&self, queue: &str, job_id: &str) -> Result<JobStatus, ResultError> {
        let mut found = JobStatus::Unknown;
        for q in self.partitions_of(queue).await? {
            found = status(&mut self.conn.clone(), &q, job_id).await?;
            if !matches!(found, JobStatus::Unknown) {
                break;
            }
        }
        Ok(found)
    }

    /// The result of job `job_id` of `queue` (job types a worker registers
    /// with `register_with_result`), decoded as `T`; `None` when there is
    /// none: not finished, no result for its type, or expired (the workers'
    /// result TTL, 1 h by default). One `GET`.
    pub async fn result<T: DeserializeOwned>(
        &self,
        queue: &str,
        job_id: &str,
    ) -> Result<Option<T>, ResultError> {
        for q in self.partitions_of(queue).await? {
            if let Some(j) = result_json(&mut self.conn.clone(), &q, job_id).await? {
                return decode::<T>(job_id, &j).map(Some);
            }
        }
        Ok(None)
    }

    /// Waits up to `timeout` for job `job_id` of `queue` to finish and
    /// returns its result (`None` for a job type without one). Looks with
    /// backoff (10 ms growing to 500 ms): each look is a `GET` of the result
    /// and a look-up in the history (for a UUIDv7 job id, only the history
    /// written since it was enqueued is read). A dead or cancelled job is
    /// an error ([`ResultError::Dead`], [`ResultError::Cancelled`]); so is
    /// the timeout ([`ResultError::Timeout`], with the job's status then).
    /// With the workers' history off, a job that dies is only seen at the
    /// timeout.
    pub async fn wait<T: DeserializeOwned>(
        &self,
        queue: &str,
        job_id: &str,
        timeout: Duration,
    ) -> Result<Option<T>, ResultError> {
        let queues = self.partitions_of(queue).await?;
        let mut conn = self.conn.clone();
        let deadline = Instant::now() + timeout;
        let mut pause = WAIT_POLL_FIRST;
        loop {
            let mut finished = None;
            for q in &queues {
                if let Some(json) = result_json(&mut conn, q, job_id).await? {
                    return decode::<T>(job_id, &json).map(Some);
                }
                if let Some(f) = find_finished(&mut conn, q, job_id).await? {
                    finished = Some((q, f));
                    break;
                }
            }
            if let Some((q, f)) = finished {
                match JobStatus::from_finished(f) {
                    JobStatus::Dead { error, .. } => {
                        return Err(ResultError::Dead {
                            job_id: job_id.to_owned(),
                            error,
                        });
                    }
                    JobStatus::Cancelled(_) => {
                        return Err(ResultError::Cancelled {
                            job_id: job_id.to_owned(),
                        });
                    }
                    // Succeeded: its result, if any, was written with it.
                    _ => {
                        let json = result_json(&mut conn, q, job_id).await?;
                        return json.map(|j| decode::<T>(job_id, &j)).transpose();
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let status = self.status(queue, job_id).await?;
                return Err(ResultError::Timeout {
                    job_id: job_id.to_owned(),
                    timeout,
                    status: Box::new(status),
                });
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause + pause / 2).min(WAIT_POLL_MAX);
        }
    }
}

fn decode<T: DeserializeOwned>(job_id: &str, json: &str) -> Result<T, ResultError> {
    serde_json::from_str(json).map_err(|source| ResultError::Decode {
        job_id: job_id.to_owned(),
        ty: std::any::type_name::<T>(),
        source,
    })
}
