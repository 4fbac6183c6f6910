//! Cancelling one job (`lua/cancel.lua`) and ending a cancelled attempt
//! (`lua/cancelled.lua`).

use std::time::Duration;

use redis::aio::ConnectionLike;

use super::{Acked, Queue, duration_ms};
use crate::error::QueueError;
use crate::history::{self, Finished};
use crate::inspect::{self, Location};
use crate::lane::Priority;
use crate::reply::protocol;
use crate::scripts;

/// How long a cancel mark on a running job waits for its worker's lease
/// renewal to see it: 1 hour (renewals run every few seconds; a mark whose
/// job ended meanwhile is dropped then).
pub const CANCEL_MARK_LIFE: Duration = Duration::from_secs(3600);
/// Times a cancel looks for a job that moves while it looks (e.g. promoted
/// from the delayed set to the stream) before it gives up.
const CANCEL_TRIES: usize = 3;

/// What [`Queue::cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancel {
    /// The job was waiting in the delayed set: removed.
    Delayed,
    /// The job was ready in the stream, not yet delivered: removed.
    Ready {
        /// Its stream entry.
        entry_id: String,
    },
    /// The job is running: its worker cancels the attempt at its next lease
    /// renewal (the handler's token fires) and ends it as cancelled.
    Running {
        /// Its stream entry.
        entry_id: String,
        /// The consumer running it.
        consumer: String,
    },
    /// The job was dead-lettered: it is finished, nothing to cancel.
    Dead,
    /// The job is finished (succeeded, dead or cancelled), as the queue's
    /// history of finished jobs records it: nothing to cancel.
    Finished(Finished),
    /// No such job in the queue nor in its history: finished before the
    /// history kept it (or with the history off), or never there.
    NotFound,
}

impl Queue {
    /// Cancels job `job_id` (or the job of a stream entry id), in whichever
    /// lane it is (whichever lane view `self` is): removes it when it waits
    /// (delayed, or ready and not yet delivered), releasing its unique
    /// lock; marks it when it runs, so its worker cancels it. Finding a job
    /// in a stream is a scan of the lanes' streams and the dead-letter
    /// stream in pages (like `millrace show`): bounded, and fine for an
    /// operator's command, not for a hot path.
    pub async fn cancel<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        job_id: &str,
    ) -> Result<Cancel, QueueError> {
        for _ in 0..CANCEL_TRIES {
            for lane in Priority::ALL {
                if self.lane(lane).cancel_script(conn, job_id, "").await? == 1 {
                    return Ok(Cancel::Delayed);
                }
            }
            let found = inspect::find(conn, self, job_id).await?;
            let mut dead = false;
            let mut moved = false;
            for loc in found {
                let lane = self.lane(loc.lane());
                let (entry, consumer) = match loc {
                    Location::Ready(e) => (e, None),
                    Location::InFlight {
                        entry, consumer, ..
                    } => (entry, Some(consumer)),
                    Location::Dead(_) => {
                        dead = true;
                        continue;
                    }
                    // Delayed again (a retry written meanwhile): once more.
                    Location::Delayed(_) => {
                        moved = true;
                        continue;
                    }
                    _ => continue,
                };
                let id = entry.get("id").unwrap_or(job_id).to_owned();
                match lane.cancel_script(conn, &id, &entry.id).await? {
                    2 => return Ok(Cancel::Ready { entry_id: entry.id }),
                    3 => {
                        return Ok(Cancel::Running {
                            entry_id: entry.id,
                            consumer: consumer.unwrap_or_default(),
                        });
                    }
                    _ => moved = true,
                }
            }
            if !moved {
                if dead {
                    return Ok(Cancel::Dead);
                }
                return Ok(match history::find_finished(conn, self, job_id).await? {
                    Some(f) => Cancel::Finished(f),
                    None => Cancel::NotFound,
                });
            }
        }
        Err(protocol(
            "cancel",
            "the job kept moving while it was looked for; try again",
        ))
    }

    async fn cancel_script<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        job_id: &str,
        entry_id: &str,
    ) -> Result<i64, QueueError> {
        scripts::CANCEL
            .key(&self.keys.stream)
            .key(&self.keys.jobs)
            .key(&self.keys.delayed)
            .key(&self.keys.unique)
            .key(&self.keys.unique_ttl)
            .key(&self.keys.cancel)
            .key(&self.keys.stats)
            .key(&self.keys.history)
            .arg(&self.group)
            .arg(job_id)
            .arg(entry_id)
            .arg(duration_ms(CANCEL_MARK_LIFE))
            .arg(self.history.max_len)
            .arg(duration_ms(self.history.max_age))
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("cancel"))
    }

    /// Ends an attempt cancelled by a cancel mark (fenced: only while
    /// `consumer` owns the entry): acknowledges and deletes it (not retried,
    /// not dead-lettered), drops its mark and attempt record, releases its
    /// job's unique lock, records it in the history as cancelled (when
    /// this queue's history is on) and counts it (`cancelled` in the stats
    /// hash). `job` describes the attempt as for an ack. Returns false when
    /// the lease was lost.
    pub async fn finish_cancelled<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        job: &Acked,
    ) -> Result<bool, QueueError> {
        let n: i64 = scripts::CANCELLED
            .key(&self.keys.stream)
            .key(&self.keys.stats)
            .key(&self.keys.tries)
            .key(&self.keys.unique)
            .key(&self.keys.unique_ttl)
            .key(&self.keys.cancel)
            .key(&self.keys.history)
            .arg(&self.group)
            .arg(consumer)
            .arg(&job.entry_id)
            .arg(job.unique.as_deref().unwrap_or(""))
            .arg(&job.job_id)
            .arg(self.history.max_len)
            .arg(duration_ms(self.history.max_age))
            .arg(job.name)
            .arg(job.attempts)
            .arg(job.took_ms)
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("cancel"))?;
        Ok(n == 1)
    }
}
