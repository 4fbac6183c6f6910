//! Acknowledging finished jobs with their history record, result and
//! unique lock (`lua/ack.lua`).

use std::time::Duration;

use redis::aio::ConnectionLike;

use super::{Queue, duration_ms};
use crate::error::QueueError;
use crate::scripts;

/// One succeeded entry for [`Queue::ack_finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Acked {
    /// The pending entry.
    pub entry_id: String,
    /// The job id (empty for an entry deleted while pending: acknowledged
    /// only, no history record).
    pub job_id: String,
    /// The job's name.
    pub name: &'static str,
    /// Attempts it took (the attempt that succeeded).
    pub attempts: u32,
    /// Run time of the attempt that succeeded, in ms.
    pub took_ms: u64,
    /// The handler's result as JSON, stored with the result TTL; `None`
    /// for job types registered without a result.
    pub result: Option<String>,
    /// The job's unique key, whose lock its success releases (unless it is
    /// a throttle lock, or a later job holds it now).
    pub unique: Option<String>,
}

impl Acked {
    /// A succeeded attempt of job `job_id` (`name`) in entry `entry_id`.
    pub fn new(
        entry_id: impl Into<String>,
        job_id: impl Into<String>,
        name: &'static str,
        attempts: u32,
        took: Duration,
    ) -> Self {
        Self {
            entry_id: entry_id.into(),
            job_id: job_id.into(),
            name,
            attempts,
            took_ms: duration_ms(took),
            result: None,
            unique: None,
        }
    }

    /// An entry that only needs acknowledging (deleted while pending: no
    /// job to record).
    pub fn bare(entry_id: impl Into<String>) -> Self {
        Self::new(entry_id, "", "", 0, Duration::ZERO)
    }

    /// The same, with the handler's result (JSON) to store.
    #[must_use]
    pub fn with_result(mut self, json: String) -> Self {
        self.result = Some(json);
        self
    }

    /// The same, releasing the job's unique lock on `key` (`None`: the job
    /// has no unique key).
    #[must_use]
    pub fn with_unique(mut self, key: Option<String>) -> Self {
        self.unique = key;
        self
    }
}

impl Queue {
    /// Acknowledges and deletes succeeded entries in one script call,
    /// counting them as processed; for each entry this call acknowledged
    /// (not one acknowledged meanwhile by a worker that took it over), it
    /// records the job in the history stream (when this queue's
    /// [`history`](Queue::history) is on) and stores its result, if any,
    /// for `result_ttl`; it releases their unique locks. `consumer` is who
    /// ran them. Returns how many were pending.
    pub async fn ack_finished<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        done: &[Acked],
        result_ttl: Duration,
    ) -> Result<u64, QueueError> {
        if done.is_empty() {
            return Ok(0);
        }
        let history = self.history;
        let mut inv = scripts::ACK.prepare_invoke();
        inv.key(&self.keys.stream)
            .key(&self.keys.stats)
            .key(&self.keys.tries)
            .key(&self.keys.unique)
            .key(&self.keys.unique_ttl)
            .key(&self.keys.history)
            .arg(&self.group);
        if !history.is_on() && done.iter().all(|d| d.result.is_none()) {
            inv.arg("ids").arg(done.len());
            for d in done {
                inv.arg(&d.entry_id);
            }
            for d in done {
                if let Some(key) = &d.unique {
                    inv.arg(key).arg(&d.job_id);
                }
            }
            return inv
                .invoke_async(conn)
                .await
                .map_err(QueueError::redis("ack"));
        }
        inv.arg("full")
            .arg(consumer)
            .arg(history.max_len)
            .arg(duration_ms(history.max_age))
            .arg(duration_ms(result_ttl).max(1));
        for d in done {
            inv.arg(&d.entry_id)
                .arg(&d.job_id)
                .arg(d.name)
                .arg(d.attempts)
                .arg(d.took_ms)
                .arg(d.result.as_deref().unwrap_or(""))
                .arg(d.unique.as_deref().unwrap_or(""));
            if d.result.is_some() {
                inv.key(self.keys.result(&d.job_id));
            }
        }
        inv.invoke_async(conn)
            .await
            .map_err(QueueError::redis("ack"))
    }
}
