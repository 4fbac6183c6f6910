//! Replay or purge every dead job a filter matches, up to a given last id,
//! in batches of [`BATCH`](super::BATCH): the loop behind `millrace dead
//! replay|purge --all` and the web dashboard's bulk actions.

use redis::aio::ConnectionLike;

use crate::error::QueueError;
use crate::inspect::{DeadFilter, DeadScan};
use crate::queue::Queue;

/// What to do with dead jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadAction {
    /// Back to the ready stream with attempts reset ([`super::replay_dead`]).
    Replay,
    /// Delete for good ([`super::purge_dead`]).
    Purge,
}

impl DeadAction {
    /// "replay" or "purge".
    pub fn verb(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Purge => "purge",
        }
    }

    /// "replayed" or "purged".
    pub fn past(self) -> &'static str {
        match self {
            Self::Replay => "replayed",
            Self::Purge => "purged",
        }
    }

    /// Applies the action to one batch of dead entry ids; returns how many
    /// were still there.
    pub async fn apply<C: ConnectionLike + Send>(
        self,
        conn: &mut C,
        queue: &Queue,
        ids: &[String],
    ) -> Result<u64, QueueError> {
        match self {
            Self::Replay => super::replay_dead(conn, queue, ids).await,
            Self::Purge => super::purge_dead(conn, queue, ids).await,
        }
    }
}

/// Applies `action` to every dead entry matching `filter` up to entry
/// `last` (inclusive), scanning by id range in batches; `progress` is told
/// each batch's size. Returns how many entries were acted on (entries gone
/// meanwhile are not counted). A run cut short can be repeated: each batch
/// re-checks its ids on the server.
pub async fn dead_bulk<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    filter: &DeadFilter,
    last: &str,
    action: DeadAction,
    mut progress: impl FnMut(u64) + Send,
) -> Result<u64, QueueError> {
    let mut scan = DeadScan::new(queue, filter.clone()).until(last);
    let mut batch = Vec::with_capacity(super::BATCH);
    let mut done = 0;
    while let Some(page) = scan.next_page(conn, super::BATCH).await? {
        for e in page {
            batch.push(e.id);
            if batch.len() == super::BATCH {
                done += action.apply(conn, queue, &batch).await?;
                progress(batch.len() as u64);
                batch.clear();
            }
        }
    }
    done += action.apply(conn, queue, &batch).await?;
    progress(batch.len() as u64);
    Ok(done)
}
