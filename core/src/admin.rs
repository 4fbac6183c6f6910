//! Operator actions on a queue (the `millrace` CLI): replay or purge
//! dead-lettered jobs, requeue stuck pending entries, run delayed jobs now.
//! Each call takes one bounded batch of ids and is one atomic script or
//! command, so a bulk operation is a loop of small steps that never blocks
//! Redis, and one interrupted half-way can simply be run again: ids already
//! handled are skipped, never duplicated. The worker never calls these.

use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::error::QueueError;
use crate::lane::Priority;
use crate::queue::{Queue, duration_ms};
use crate::scripts;

mod dead_bulk;

pub use dead_bulk::{DeadAction, dead_bulk};

/// Ids per script call in bulk operations: small enough that one call never
/// holds Redis for long.
pub const BATCH: usize = 500;

/// Result of a requeue batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Requeued {
    /// Entries re-added to the ready stream.
    pub requeued: u64,
    /// Entries that were pending but whose fields were gone: acknowledged,
    /// nothing to run.
    pub dropped: u64,
    /// Entries left alone: no longer pending, renewed by a live worker
    /// (idle below the minimum), or held by another consumer.
    pub skipped: u64,
}

/// Replays dead-lettered entries to the ready stream as fresh first
/// attempts (attempt 1, error cleared) and deletes them from the
/// dead-letter stream, atomically. An entry goes back to the lane its
/// `priority` field names (the default lane without one), whichever lane
/// view `queue` is. Returns how many were replayed; ids no longer in the
/// dead-letter stream are skipped.
pub async fn replay_dead<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    entry_ids: &[String],
) -> Result<u64, QueueError> {
    if entry_ids.is_empty() {
        return Ok(0);
    }
    let k = queue.keys();
    scripts::DEAD_REPLAY
        .key(k.for_lane(Priority::Default).stream)
        .key(&k.dead)
        .key(k.for_lane(Priority::High).stream)
        .key(k.for_lane(Priority::Low).stream)
        .key(&k.lanes)
        .arg(entry_ids)
        .invoke_async(conn)
        .await
        .map_err(QueueError::redis("replay dead"))
}

/// Deletes entries from the dead-letter stream. Returns how many existed.
pub async fn purge_dead<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    entry_ids: &[String],
) -> Result<u64, QueueError> {
    if entry_ids.is_empty() {
        return Ok(0);
    }
    redis::cmd("XDEL")
        .arg(&queue.keys().dead)
        .arg(entry_ids)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("purge dead"))
}

/// Makes stuck pending entries of `queue`'s lane (the lane view's stream;
/// entry ids are unique per stream only) runnable now: each entry that is, when the
/// script runs, still pending, idle at least `min_idle` and (if given) held
/// by `consumer`, is re-added to the ready stream and its old entry
/// acknowledged and deleted, in one atomic script. Safe against live
/// workers: an entry whose lease was renewed meanwhile is skipped, and its
/// old owner's late outcome is refused by the lease fence.
pub async fn requeue<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    entry_ids: &[String],
    min_idle: Duration,
    consumer: Option<&str>,
) -> Result<Requeued, QueueError> {
    if entry_ids.is_empty() {
        return Ok(Requeued::default());
    }
    let (requeued, dropped, skipped): (u64, u64, u64) = scripts::REQUEUE
        .key(&queue.keys().stream)
        .key(&queue.keys().tries)
        .arg(queue.group())
        .arg(duration_ms(min_idle))
        .arg(consumer.unwrap_or(""))
        .arg(entry_ids)
        .invoke_async(conn)
        .await
        .map_err(QueueError::redis("requeue"))?;
    Ok(Requeued {
        requeued,
        dropped,
        skipped,
    })
}

/// Moves delayed jobs (scheduled or waiting for a retry) to the ready
/// stream of their lane now, in whichever lane's delayed set each is
/// (whichever lane view `queue` is): one script call per lane. Returns how
/// many were moved; ids no longer delayed are skipped.
pub async fn run_now<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    job_ids: &[String],
) -> Result<u64, QueueError> {
    if job_ids.is_empty() {
        return Ok(0);
    }
    let retention = crate::queue::DeadRetention::default();
    let mut moved = 0;
    for lane in Priority::ALL {
        let k = queue.keys().for_lane(lane);
        moved += scripts::RUN_NOW
            .key(&k.delayed)
            .key(&k.jobs)
            .key(&k.stream)
            .key(&k.dead)
            .key(&k.stats)
            .arg(retention.max_len)
            .arg(duration_ms(retention.max_age))
            .arg(job_ids)
            .invoke_async::<u64>(conn)
            .await
            .map_err(QueueError::redis("run now"))?;
    }
    Ok(moved)
}
