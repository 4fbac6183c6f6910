//! The group's pending entries.

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use super::stats::group_info;
use super::tries::with_tries;
use super::{PAGE, RawEntry, compare_entry_ids, in_lane, is_missing_key, parse_range};
use crate::error::QueueError;
use crate::lane::Priority;
use crate::queue::{Queue, duration_ms};

/// One pending (in-flight) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingEntry {
    /// Stream entry id.
    pub entry_id: String,
    /// The consumer that holds it.
    pub consumer: String,
    /// Time since it was last delivered or its lease renewed, in ms.
    pub idle_ms: u64,
    /// How many times it was delivered.
    pub deliveries: u64,
    /// The entry's fields; `None` when the entry was deleted while pending.
    pub entry: Option<RawEntry>,
    /// The lane whose stream holds it.
    pub lane: Priority,
}

/// Which pending entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingFilter {
    /// Only entries held by this consumer.
    pub consumer: Option<String>,
    /// Only entries idle at least this long.
    pub min_idle: Duration,
    /// Only jobs with this name.
    pub job: Option<String>,
}

impl PendingFilter {
    /// A filter on consumer, minimum idle time and job name.
    pub fn new(consumer: Option<String>, min_idle: Duration, job: Option<String>) -> Self {
        Self {
            consumer,
            min_idle,
            job,
        }
    }

    fn keeps(&self, p: &PendingEntry) -> bool {
        match &self.job {
            None => true,
            Some(job) => p
                .entry
                .as_ref()
                .and_then(|e| e.get("name"))
                .is_some_and(|n| n == job),
        }
    }
}

/// Up to `limit` pending entries matching `filter`, across every lane the
/// queue uses (whichever lane view `queue` is), oldest entry first, read
/// in pages of [`PAGE`].
pub async fn pending<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    filter: &PendingFilter,
    limit: usize,
) -> Result<Vec<PendingEntry>, QueueError> {
    let mut out = Vec::new();
    for lane in queue.lanes(conn).await? {
        let lane_q = queue.lane(lane);
        let mut found = 0;
        let mut cursor = "-".to_owned();
        while found < limit {
            let page = pending_page(conn, &lane_q, filter, &cursor, PAGE).await?;
            let Some(last) = page.last() else { break };
            cursor = format!("({}", last.entry_id);
            let full = page.len() < PAGE;
            let before = out.len();
            out.extend(page.into_iter().filter(|p| filter.keeps(p)));
            found += out.len() - before;
            if full {
                break;
            }
        }
    }
    out.sort_by(|a, b| compare_entry_ids(&a.entry_id, &b.entry_id));
    out.truncate(limit);
    Ok(out)
}

/// One page of the pending entries of `queue`'s lane (the lane view's
/// stream) after `cursor` (an XPENDING start, e.g. `-` or `(1700-0`),
/// filtered by consumer and idle time (not by job name: see
/// [`PendingFilter`]), with their fields.
pub async fn pending_page<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    filter: &PendingFilter,
    cursor: &str,
    count: usize,
) -> Result<Vec<PendingEntry>, QueueError> {
    let k = queue.keys();
    let mut cmd = redis::cmd("XPENDING");
    cmd.arg(&k.stream)
        .arg(queue.group())
        .arg("IDLE")
        .arg(duration_ms(filter.min_idle))
        .arg(cursor)
        .arg("+")
        .arg(count.max(1));
    if let Some(c) = &filter.consumer {
        cmd.arg(c);
    }
    let rows: Result<Vec<(String, String, u64, u64)>, redis::RedisError> =
        cmd.query_async(conn).await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) if is_missing_key(&e) => return Ok(Vec::new()),
        Err(e) => return Err(QueueError::redis("xpending")(e)),
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for r in &rows {
        pipe.cmd("XRANGE").arg(&k.stream).arg(&r.0).arg(&r.0);
    }
    let entries: Vec<Value> = pipe
        .query_async(conn)
        .await
        .map_err(QueueError::redis("xrange"))?;
    // Entries retried in place show their attempt record.
    let lane = queue.priority();
    let mut parsed: Vec<Option<RawEntry>> = entries
        .into_iter()
        .map(|e| in_lane(parse_range(e), lane).pop())
        .collect();
    let mut found: Vec<RawEntry> = parsed.iter_mut().filter_map(Option::take).collect();
    with_tries(conn, queue, &mut found).await?;
    let mut found = found.into_iter().peekable();
    Ok(rows
        .into_iter()
        .map(|(entry_id, consumer, idle_ms, deliveries)| PendingEntry {
            entry: found.next_if(|e| e.id == entry_id),
            entry_id,
            consumer,
            idle_ms,
            deliveries,
            lane,
        })
        .collect())
}

/// Total pending entries of the queue's group over every lane the queue
/// uses (a lane without a group counts 0).
pub async fn pending_count<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<u64, QueueError> {
    let mut n = 0;
    for lane in queue.lanes(conn).await? {
        n += group_info(conn, &queue.lane(lane))
            .await?
            .map_or(0, |g| g.pending);
    }
    Ok(n)
}
