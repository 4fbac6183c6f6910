//! A consumer's own side of a queue: its pending entries, its heartbeat
//! (server time), and leaving the group. Every deletion of a consumer is one
//! script that checks, in the same atomic step, that nothing is pending for
//! it (and, when pruning another worker, that it is idle in the group and
//! silent in the heartbeat set), so no entry can be delivered to it between
//! the check and the deletion.

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use crate::error::QueueError;
use crate::queue::{Delivery, Queue, duration_ms};
use crate::reply::parse_entries;
use crate::scripts;

/// What an attempt to remove a consumer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Removed from the group and the heartbeat set.
    Removed,
    /// Kept: entries are pending for it (removing it would drop them).
    Pending,
    /// Kept: the group saw it more recently than the idle minimum.
    Busy,
    /// Kept: its heartbeat (server time) is more recent than the minimum.
    Alive,
}

/// The conditions under which another worker's consumer may be pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneRule {
    /// Its idle time in the group (last delivery or claim) is at least this.
    pub min_idle: Duration,
    /// Its last heartbeat, on the server's clock, is at least this old (or
    /// it has none).
    pub min_silence: Duration,
}

impl Queue {
    /// Adds `consumer` to the group now (`XGROUP CREATECONSUMER`), so it is
    /// listed from its start: a blocking read that returns nothing does not
    /// create it on Redis 7.0. Idempotent.
    pub async fn join<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
    ) -> Result<(), QueueError> {
        redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(&self.keys().stream)
            .arg(self.group())
            .arg(consumer)
            .query_async::<i64>(conn)
            .await
            .map(drop)
            .map_err(QueueError::redis("join"))
    }

    /// The ids of up to `count` entries pending for `consumer`.
    pub async fn pending_of<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<String>, QueueError> {
        self.pending_between(conn, consumer, "-", "+", count).await
    }

    /// The ids of up to `count` entries pending for `consumer` with ids
    /// from `first` to `last` (inclusive).
    pub async fn pending_between<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        first: &str,
        last: &str,
        count: usize,
    ) -> Result<Vec<String>, QueueError> {
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(&self.keys().stream)
            .arg(self.group())
            .arg(first)
            .arg(last)
            .arg(count.max(1))
            .arg(consumer)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("pending"))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The entries `entry_ids` that are, when the script runs, still
    /// pending for `consumer`, with their fields (`None`: deleted while
    /// pending). With `claim` false they are read without raising their
    /// delivery count (finding an entry again after a reconnect is not a
    /// new delivery); with `claim` true they are claimed, which raises it
    /// (a new process starting an earlier one's entries is a real start).
    pub async fn own_entries<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        entry_ids: &[String],
        claim: bool,
    ) -> Result<Vec<Delivery>, QueueError> {
        if entry_ids.is_empty() {
            return Ok(Vec::new());
        }
        let reply: Value = scripts::OWN_PENDING
            .key(&self.keys().stream)
            .key(&self.keys().tries)
            .arg(self.group())
            .arg(consumer)
            .arg(if claim { "claim" } else { "keep" })
            .arg(entry_ids)
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("own pending"))?;
        parse_entries(reply, "own pending")
    }

    /// Records that `consumer` is alive now, on the server's clock (a
    /// worker's own clock may be skewed). Returns the time written (unix ms).
    pub async fn heartbeat<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
    ) -> Result<u64, QueueError> {
        Ok(self.beat_at(conn, consumer).await?.0)
    }

    /// A worker's upkeep tick: records that `consumer` is alive now (server
    /// time) and returns whether the queue is paused, in one round trip.
    pub async fn beat<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
    ) -> Result<bool, QueueError> {
        Ok(self.beat_at(conn, consumer).await?.1)
    }

    /// `beat.lua`: the heartbeat written (unix ms, server time) and
    /// whether the queue is paused.
    async fn beat_at<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
    ) -> Result<(u64, bool), QueueError> {
        let (now, paused): (u64, i64) = scripts::BEAT
            .key(&self.keys().workers)
            .key(&self.keys().paused)
            .key(&self.keys().unique)
            .key(&self.keys().unique_ttl)
            .key(&self.keys().cancel)
            .arg(consumer)
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("heartbeat"))?;
        Ok((now, paused == 1))
    }

    /// Removes `consumer` (this worker, leaving) from the group and the
    /// heartbeat set, atomically with the check that nothing is pending for
    /// it. Returns whether it was removed.
    pub async fn remove_consumer<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
    ) -> Result<bool, QueueError> {
        Ok(self.leave(conn, consumer, None).await? == Leave::Removed)
    }

    /// Removes another worker's `consumer` only if, in the same atomic step,
    /// nothing is pending for it and `rule` holds (idle in the group and
    /// silent in the heartbeat set, both on server time).
    pub async fn prune_consumer<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        rule: PruneRule,
    ) -> Result<Leave, QueueError> {
        self.leave(conn, consumer, Some(rule)).await
    }

    async fn leave<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        rule: Option<PruneRule>,
    ) -> Result<Leave, QueueError> {
        // A zero minimum would skip the check: at least 1 ms when pruning.
        let (idle, silence) = rule.map_or((0, 0), |r| {
            (
                duration_ms(r.min_idle).max(1),
                duration_ms(r.min_silence).max(1),
            )
        });
        let code: i64 = scripts::LEAVE
            .key(&self.keys().stream)
            .key(&self.keys().workers)
            .arg(self.group())
            .arg(consumer)
            .arg(idle)
            .arg(silence)
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("remove consumer"))?;
        Ok(match code {
            1 => Leave::Removed,
            0 => Leave::Pending,
            -1 => Leave::Busy,
            _ => Leave::Alive,
        })
    }
}
