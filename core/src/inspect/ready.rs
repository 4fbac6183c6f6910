//! Ready entries: those in the stream after the group's last-delivered id,
//! not yet handed to any consumer, oldest first.

use redis::aio::ConnectionLike;

use super::stats::group_info;
use super::{PAGE, RawEntry, in_lane, range};
use crate::error::QueueError;
use crate::queue::Queue;

/// Most entries one listing reads while looking for matches of a job name.
pub const READY_SCAN_LIMIT: u64 = 100_000;

/// A page of ready entries, from [`ready`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadyPage {
    /// The matching entries, lane by lane in serving order (high first),
    /// oldest first in a lane, at most the limit asked for.
    pub entries: Vec<RawEntry>,
    /// Ready entries in all (stream lengths less the group's pending ones,
    /// over the lanes).
    pub total: u64,
    /// Entries read to find them.
    pub scanned: u64,
    /// The scan stopped at [`READY_SCAN_LIMIT`] before a stream's end.
    pub cut: bool,
}

/// Up to `limit` ready entries of `queue` over every lane it uses, in
/// serving order (only jobs named `job`, when given), read with `XRANGE`
/// in pages from each lane group's last-delivered id, reading at most
/// [`READY_SCAN_LIMIT`] entries per lane.
pub async fn ready<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    job: Option<&str>,
    limit: usize,
) -> Result<ReadyPage, QueueError> {
    let mut out = ReadyPage {
        entries: Vec::new(),
        total: 0,
        scanned: 0,
        cut: false,
    };
    for lane in queue.lanes(conn).await? {
        let left = limit.saturating_sub(out.entries.len());
        let page = lane_ready(conn, &queue.lane(lane), job, left).await?;
        out.entries.extend(in_lane(page.entries, lane));
        out.total += page.total;
        out.scanned += page.scanned;
        out.cut |= page.cut;
    }
    Ok(out)
}

/// [`ready`] in the lane of the lane view `queue`.
async fn lane_ready<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    job: Option<&str>,
    limit: usize,
) -> Result<ReadyPage, QueueError> {
    let stream = &queue.keys().stream;
    let group = group_info(conn, queue).await?;
    let len: u64 = redis::cmd("XLEN")
        .arg(stream)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("xlen"))?;
    let (pending, mut cursor) = match group {
        Some(g) => (g.pending, format!("({}", g.last_delivered)),
        None => (0, "-".to_owned()),
    };
    let mut page = ReadyPage {
        entries: Vec::new(),
        total: len.saturating_sub(pending),
        scanned: 0,
        cut: false,
    };
    while page.entries.len() < limit {
        let batch = range(conn, stream, &cursor, "+", PAGE, false).await?;
        let Some(last) = batch.last() else { break };
        cursor = format!("({}", last.id);
        let full = batch.len() == PAGE;
        page.scanned += batch.len() as u64;
        page.entries.extend(
            batch
                .into_iter()
                .filter(|e| job.is_none_or(|j| e.get("name") == Some(j))),
        );
        if !full {
            break;
        }
        if page.scanned >= READY_SCAN_LIMIT {
            page.cut = page.entries.len() < limit;
            break;
        }
    }
    page.entries.truncate(limit);
    Ok(page)
}
