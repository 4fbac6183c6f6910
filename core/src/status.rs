//! One job's status by its id, and its stored result: what
//! `millrace::Client::status`, `result` and `wait` read.
//!
//! The look-up goes from cheap to costly and stops at the first answer:
//! the delayed sets of the queue's lanes (one pipeline of an `HGET` and a
//! `ZSCORE` per lane: scheduled, or retrying after a backoff), the history
//! stream ([`history::find_finished`]: succeeded, dead, cancelled;
//! bounded), then the lanes' ready streams and the dead-letter stream
//! ([`inspect::find`]: a scan in pages of 500 of the unfinished entries
//! and the dead ones: running, queued, dead when the history is off or
//! trimmed). A job found nowhere is [`JobStatus::Unknown`]: never
//! enqueued, or finished and gone from a history that is off or trimmed.

use redis::aio::ConnectionLike;

use crate::error::QueueError;
use crate::history::{self, Finished, Outcome};
use crate::inspect::{self, Location};
use crate::queue::Queue;

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobStatus {
    /// In the ready stream, waiting for a worker.
    Queued {
        /// Its stream entry.
        entry_id: String,
        /// When it was enqueued (unix ms), when the entry says.
        enqueued_at_ms: Option<u64>,
        /// The attempt it waits to run (above 1 after a hand-back or a
        /// requeue of a retried job).
        attempt: u32,
    },
    /// Waiting in the delayed set for its first attempt.
    Scheduled {
        /// When it becomes ready (unix ms).
        due_at_ms: u64,
    },
    /// Delivered to a consumer and not finished.
    Running {
        /// The consumer that holds it.
        consumer: String,
        /// Its stream entry.
        entry_id: String,
        /// The attempt running (a retry with no backoff runs again in
        /// place, on the same entry).
        attempt: u32,
        /// Time since its last delivery or lease renewal, in ms (the start
        /// time is not stored: it would cost a write per job).
        idle_ms: u64,
        /// How many times the entry was delivered.
        deliveries: u64,
        /// The previous attempt's error, for a retry.
        last_error: Option<String>,
    },
    /// Failed, waiting in the delayed set for its next attempt.
    Retrying {
        /// When the next attempt becomes ready (unix ms).
        next_at_ms: u64,
        /// The next attempt's number.
        attempt: u32,
        /// The last attempt's error.
        last_error: Option<String>,
    },
    /// Its handler succeeded (from the history).
    Succeeded(Finished),
    /// Dead-lettered.
    Dead {
        /// When (unix ms).
        at_ms: u64,
        /// Why.
        error: String,
        /// Attempts it took, when known.
        attempts: Option<u32>,
    },
    /// Cancelled (from the history).
    Cancelled(Finished),
    /// Not found: never enqueued here, or finished and no longer in the
    /// history (off, or trimmed by its retention).
    Unknown,
}

impl JobStatus {
    /// True once the job will not run again: succeeded, dead or cancelled.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Succeeded(_) | Self::Dead { .. } | Self::Cancelled(_)
        )
    }

    /// A one-word name: queued, scheduled, running, retrying, succeeded,
    /// dead, cancelled, unknown.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Queued { .. } => "queued",
            Self::Scheduled { .. } => "scheduled",
            Self::Running { .. } => "running",
            Self::Retrying { .. } => "retrying",
            Self::Succeeded(_) => "succeeded",
            Self::Dead { .. } => "dead",
            Self::Cancelled(_) => "cancelled",
            Self::Unknown => "unknown",
        }
    }

    /// The status a history record gives.
    pub fn from_finished(f: Finished) -> Self {
        match f.outcome {
            Some(Outcome::Dead) => Self::Dead {
                at_ms: f.finished_at_ms,
                error: f.error.unwrap_or_default(),
                attempts: f.attempts,
            },
            Some(Outcome::Cancelled) => Self::Cancelled(f),
            _ => Self::Succeeded(f),
        }
    }
}

fn attempt_of(get: impl Fn(&str) -> Option<String>) -> u32 {
    get("attempt").and_then(|a| a.parse().ok()).unwrap_or(1)
}

/// The status of job `job_id` in `queue` (see the module docs for the
/// order and the cost).
pub async fn status<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    job_id: &str,
) -> Result<JobStatus, QueueError> {
    if let Some(d) = inspect::delayed_job(conn, queue, job_id).await? {
        let get = |k: &str| d.get(k).map(str::to_owned);
        return Ok(if d.is_retry() {
            JobStatus::Retrying {
                next_at_ms: d.due_ms,
                attempt: attempt_of(get),
                last_error: d.get("error").map(str::to_owned),
            }
        } else {
            JobStatus::Scheduled {
                due_at_ms: d.due_ms,
            }
        });
    }
    if let Some(f) = history::find_finished(conn, queue, job_id).await? {
        return Ok(JobStatus::from_finished(f));
    }
    let mut dead = None;
    let mut queued = None;
    for loc in inspect::find(conn, queue, job_id).await? {
        match loc {
            Location::InFlight {
                entry,
                consumer,
                idle_ms,
                deliveries,
            } => {
                return Ok(JobStatus::Running {
                    consumer,
                    attempt: attempt_of(|k| entry.get(k).map(str::to_owned)),
                    last_error: entry.get("error").map(str::to_owned),
                    entry_id: entry.id,
                    idle_ms,
                    deliveries,
                });
            }
            Location::Ready(e) => {
                queued = Some(JobStatus::Queued {
                    attempt: attempt_of(|k| e.get(k).map(str::to_owned)),
                    enqueued_at_ms: e.get("enqueued_at").and_then(|t| t.parse().ok()),
                    entry_id: e.id,
                });
            }
            Location::Dead(e) => {
                // The newest dead entry wins (the scan is oldest first).
                dead = Some(JobStatus::Dead {
                    at_ms: e
                        .get("dead_at")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or_else(|| e.added_ms()),
                    error: e.get("error").unwrap_or_default().to_owned(),
                    attempts: e.get("attempt").and_then(|a| a.parse().ok()),
                });
            }
            _ => {}
        }
    }
    Ok(queued.or(dead).unwrap_or(JobStatus::Unknown))
}

/// The stored result (JSON) of job `job_id`, or `None` when there is none
/// (no result kept for its type, not finished, or expired).
pub async fn result_json<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    job_id: &str,
) -> Result<Option<String>, QueueError> {
    redis::cmd("GET")
        .arg(queue.keys().result(job_id))
        .query_async(conn)
        .await
        .map_err(QueueError::redis("result"))
}
