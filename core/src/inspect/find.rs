//! Finding one job wherever it is.

use redis::aio::ConnectionLike;

use super::delayed::{DelayedJob, delayed_job};
use super::tries::with_tries;
use super::{PAGE, RawEntry, entry, in_lane, is_entry_id, is_missing_key, range};
use crate::error::QueueError;
use crate::lane::Priority;
use crate::queue::Queue;

/// Where a job was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// In the ready stream, waiting for a worker.
    Ready(RawEntry),
    /// In the ready stream and delivered: running (or stuck).
    InFlight {
        /// The entry.
        entry: RawEntry,
        /// Its consumer.
        consumer: String,
        /// Idle time in ms.
        idle_ms: u64,
        /// Delivery count.
        deliveries: u64,
    },
    /// Pending, but its entry was deleted: nothing left to run.
    PendingDeleted {
        /// Entry id.
        entry_id: String,
        /// Its consumer.
        consumer: String,
        /// The lane whose stream held it.
        lane: Priority,
    },
    /// In the delayed set (scheduled or retrying).
    Delayed(DelayedJob),
    /// In the dead-letter stream.
    Dead(RawEntry),
}

impl Location {
    /// The lane the job was found in (for a dead entry, the lane it is
    /// replayed to).
    pub fn lane(&self) -> Priority {
        match self {
            Self::Ready(e) | Self::Dead(e) | Self::InFlight { entry: e, .. } => e.lane,
            Self::PendingDeleted { lane, .. } => *lane,
            Self::Delayed(d) => d.lane,
        }
    }
}

/// Finds a job by job id or stream entry id, in every lane of the queue
/// (whichever lane view `queue` is): in the delayed sets, the ready
/// streams (ready or in flight) and the dead-letter stream. A job id needs
/// a scan of the streams (in pages of [`PAGE`]); an entry id is a direct
/// look-up. Returns every place it was found (a replayed job may also have
/// an older dead entry; entry ids are unique per stream only, so one may
/// name entries in two lanes).
pub async fn find<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    id: &str,
) -> Result<Vec<Location>, QueueError> {
    let k = queue.keys();
    let mut found = Vec::new();
    if is_entry_id(id) {
        for lane in Priority::ALL {
            let lane_q = queue.lane(lane);
            if let Some(mut e) = entry(conn, &lane_q.keys().stream, id).await? {
                e.lane = lane;
                found.push(locate_stream_entry(conn, &lane_q, e).await?);
            } else if let Some(p) = pending_info(conn, &lane_q, id).await? {
                found.push(Location::PendingDeleted {
                    entry_id: id.to_owned(),
                    consumer: p.0,
                    lane,
                });
            }
        }
        if let Some(e) = entry(conn, &k.dead, id).await? {
            found.push(Location::Dead(e));
        }
        return Ok(found);
    }
    if let Some(d) = delayed_job(conn, queue, id).await? {
        found.push(Location::Delayed(d));
    }
    for lane in Priority::ALL {
        let lane_q = queue.lane(lane);
        let entries = scan_for_job(conn, &lane_q.keys().stream, id).await?;
        for e in in_lane(entries, lane) {
            found.push(locate_stream_entry(conn, &lane_q, e).await?);
        }
    }
    for e in scan_for_job(conn, &k.dead, id).await? {
        found.push(Location::Dead(e));
    }
    Ok(found)
}

async fn scan_for_job<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    job_id: &str,
) -> Result<Vec<RawEntry>, QueueError> {
    let mut out = Vec::new();
    let mut cursor = "-".to_owned();
    loop {
        let page = range(conn, key, &cursor, "+", PAGE, false).await?;
        let Some(last) = page.last() else { break };
        cursor = format!("({}", last.id);
        let done = page.len() < PAGE;
        out.extend(page.into_iter().filter(|e| e.get("id") == Some(job_id)));
        if done {
            break;
        }
    }
    Ok(out)
}

/// (consumer, idle ms, deliveries) of a pending entry.
async fn pending_info<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    id: &str,
) -> Result<Option<(String, u64, u64)>, QueueError> {
    let rows: Result<Vec<(String, String, u64, u64)>, redis::RedisError> = redis::cmd("XPENDING")
        .arg(&queue.keys().stream)
        .arg(queue.group())
        .arg(id)
        .arg(id)
        .arg(1)
        .query_async(conn)
        .await;
    match rows {
        Ok(mut r) => Ok(r.pop().map(|(_, c, i, d)| (c, i, d))),
        Err(e) if is_missing_key(&e) => Ok(None),
        Err(e) => Err(QueueError::redis("xpending")(e)),
    }
}

async fn locate_stream_entry<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    mut e: RawEntry,
) -> Result<Location, QueueError> {
    let pending = pending_info(conn, queue, &e.id).await?;
    if pending.is_some() {
        // Retried in place: its attempt record, not its first fields.
        with_tries(conn, queue, std::slice::from_mut(&mut e)).await?;
    }
    Ok(match pending {
        Some((consumer, idle_ms, deliveries)) => Location::InFlight {
            entry: e,
            consumer,
            idle_ms,
            deliveries,
        },
        None => Location::Ready(e),
    })
}
