//! What a bulk replay or purge of dead jobs would touch: the count, the
//! last id (the bulk stops there) and the first few, in one bounded-memory
//! scan. The CLI's prompt and the web dashboard's confirmation page show it.

use redis::aio::ConnectionLike;

use super::dead::{DeadFilter, DeadScan};
use super::{PAGE, RawEntry, range};
use crate::error::QueueError;
use crate::queue::Queue;

/// The dead entries a filter matches now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadMatches {
    /// How many match.
    pub count: u64,
    /// The newest matching entry's id: a bulk action stops there, so jobs
    /// that die while it runs are not swept up unseen.
    pub last: Option<String>,
    /// The first (oldest) few matching entries.
    pub sample: Vec<RawEntry>,
}

/// Counts the dead entries of `queue` matching `filter`, keeping the last
/// id and up to `sample` entries. Without a filter it is three commands
/// (XLEN and the two ends); with one it reads the stream in pages of
/// [`PAGE`] by id range.
pub async fn dead_matches<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    filter: &DeadFilter,
    sample: usize,
) -> Result<DeadMatches, QueueError> {
    let key = &queue.keys().dead;
    let mut out = DeadMatches::default();
    if filter.is_empty() {
        out.count = super::dead_count(conn, queue).await?;
        out.last = range(conn, key, "-", "+", 1, true)
            .await?
            .pop()
            .map(|e| e.id);
        out.sample = range(conn, key, "-", "+", sample, false).await?;
        return Ok(out);
    }
    let mut scan = DeadScan::new(queue, filter.clone());
    while let Some(page) = scan.next_page(conn, PAGE).await? {
        out.count += page.len() as u64;
        if let Some(e) = page.last() {
            out.last = Some(e.id.clone());
        }
        let room = sample.saturating_sub(out.sample.len());
        out.sample.extend(page.into_iter().take(room));
    }
    Ok(out)
}
