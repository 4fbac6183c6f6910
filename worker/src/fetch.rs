//! The fetch loop: reserve free slots, reclaim expired leases into them
//! when a reclaim round is due, read at most the remaining number of
//! entries with a blocking XREADGROUP on a dedicated connection, and start a
//! task per entry.
//!
//! A read is never simply dropped: the server may deliver entries to it at
//! any moment. On shutdown or pause the loop asks the server to end the read
//! (`CLIENT UNBLOCK`, from the command connection) and waits for its reply;
//! entries a read returns after shutdown began are handed back at once. A
//! read that outlives its BLOCK by [`READ_MARGIN`] is a stalled connection
//! (a half-dead socket, a black-holed network): it is abandoned and its
//! connection closed, never returned to the pool, and a new one taken.
//!
//! Entries delivered to a read whose reply never arrived stay pending for
//! this consumer. They are found by an own-pending sweep (XPENDING, then the
//! entries by id), after every reconnect and at every reclaim round, which
//! does not raise their delivery count: only real starts count toward
//! `max_deliveries`. At a start, entries an earlier process of the same
//! consumer name left pending are claimed, which does count. A missing
//! group (Redis restarted without its data) is recreated from `0`, so
//! nothing is skipped. The loop records its progress for readiness.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use millrace_core::connect::{ReaderConn, Readers};
use millrace_core::{Delivery, Priority, QueueError, ReadFrom};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::lanes::{LaneSet, read_order};
use crate::lease;
use crate::metrics;
use crate::run;
use crate::state::QueueCtx;

/// How long past its BLOCK a read may go unanswered before its connection
/// counts as stalled and is replaced.
pub(crate) const READ_MARGIN: Duration = Duration::from_secs(1);
/// How often `CLIENT UNBLOCK` is tried again while an interrupted read has
/// not returned (the first may reach the server before the read blocks).
const UNBLOCK_RETRY: Duration = Duration::from_millis(50);
/// Most own pending entries looked at by one sweep.
const OWN_SWEEP: usize = 1000;

/// A dedicated reader connection and its server-side client id (for
/// `CLIENT UNBLOCK`; `None` when the server would not tell).
struct Reader {
    conn: ReaderConn,
    id: Option<i64>,
}

/// How a read ended.
enum ReadEnd {
    Entries(Vec<Delivery>),
    Failed(QueueError),
    /// No reply within BLOCK + margin.
    Stalled,
}

/// Runs until the stop token fires.
pub(crate) async fn fetch_loop(set: Arc<LaneSet>, pool: Readers) {
    let q = set.base.clone();
    let mut lanes_seen = set.version();
    let mut lanes = set.all();
    let mut reader: Option<Reader> = None;
    // At a start, entries pending for this consumer name were left by an
    // earlier process (a fixed consumer name): claim them (a real restart).
    let mut sweep: Option<bool> = Some(true);
    let mut backoff = Backoff::default();
    // A worker starts with a reclaim round: a replacement for a crashed
    // worker (or one in a fast rolling deploy) takes over expired leases at
    // once instead of after its first interval.
    let mut next_reclaim = Instant::now();
    // The last read found nothing.
    let mut idle = false;
    q.progress.beat();
    while !q.stop.is_cancelled() {
        if q.paused.load(Ordering::Relaxed) {
            q.progress.waiting(true);
            pause(&q, Duration::from_millis(100)).await;
            continue;
        }
        q.progress.waiting(true);
        // Slots shared with the queue's other partitions: a read that
        // found nothing last time blocks holding one slot, not all of them.
        let cap = if idle && set.shares_slots() {
            1
        } else {
            usize::MAX
        };
        let Some(mut permits) = reserve(&q, cap).await else {
            break;
        };
        q.progress.waiting(false);
        if let Some(claim) = sweep
            && sweep_lanes(&lanes, &mut permits, claim).await
        {
            sweep = None;
        }
        if Instant::now() >= next_reclaim {
            // A lane producers started using was added meanwhile (by the
            // look-out task: no Redis call here).
            if set.version() != lanes_seen {
                lanes_seen = set.version();
                lanes = set.all();
                sweep = Some(false);
            }
            // A full round may have left expired entries behind (it had only
            // the slots free at that moment): go again at the next turn.
            let mut full = false;
            for lane in &lanes {
                full |= lease::reclaim_into(lane, &mut permits).await;
            }
            if !sweep_lanes(&lanes, &mut permits, false).await {
                sweep = Some(false);
            }
            next_reclaim = if full {
                Instant::now()
            } else {
                Instant::now() + q.cfg.reclaim_every
            };
        }
        if permits.is_empty() {
            continue;
        }
        // Block no longer than until the next reclaim round (BLOCK 0 would
        // mean forever, so at least 1 ms).
        let block = q
            .cfg
            .block
            .min(next_reclaim.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        let end = if lanes.len() > 1 {
            match take(&q, &lanes, &mut permits).await {
                Taking::Started => {
                    idle = false;
                    backoff.reset();
                    q.progress.beat();
                    continue;
                }
                Taking::Stopped => break,
                Taking::Failed(e) => ReadEnd::Failed(e),
                Taking::Empty(order, positions) => {
                    idle = true;
                    let Some(r) = reader_or_connect(&q, &pool, &mut reader).await else {
                        drop(permits);
                        pause(&q, backoff.next()).await;
                        continue;
                    };
                    // The wait claims nothing: what it saw is taken at the
                    // next turn.
                    let wait = q.queue.wait_lanes(&mut r.conn, &order, &positions, block);
                    let wait = async { wait.await.map(|_| Vec::new()) };
                    blocking(&q, r.id, block, wait).await
                }
            }
        } else {
            let Some(r) = reader_or_connect(&q, &pool, &mut reader).await else {
                drop(permits);
                pause(&q, backoff.next()).await;
                continue;
            };
            let lane = &lanes[0];
            let read = lane.queue.read(
                &mut r.conn,
                &q.consumer,
                permits.len(),
                block,
                &ReadFrom::New,
            );
            match blocking(&q, r.id, block, read).await {
                ReadEnd::Entries(deliveries) => {
                    idle = deliveries.is_empty();
                    backoff.reset();
                    q.progress.beat();
                    if q.stop.is_cancelled() {
                        hand_back(lane, deliveries).await;
                        break;
                    }
                    for d in deliveries {
                        let Some(permit) = permits.pop() else { break };
                        // Already running here (seen again): skip.
                        if let Err(permit) = run::start(lane, d, permit) {
                            permits.push(permit);
                        }
                    }
                    continue;
                }
                other => other,
            }
        };
        match end {
            ReadEnd::Entries(_) => {
                backoff.reset();
                q.progress.beat();
            }
            ReadEnd::Failed(e) if e.is_no_group() => {
                warn!(
                    queue = q.queue.name(),
                    "consumer group missing (Redis restarted?): recreating it"
                );
                let mut conn = q.conn();
                for lane in &lanes {
                    let declared = match lane.queue.declare(&mut conn).await {
                        Ok(()) => lane.queue.join(&mut conn, &q.consumer).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = declared {
                        metrics::redis_error(q.queue.name(), "declare");
                        warn!(queue = q.queue.name(), lane = %lane.queue.priority(), error = %e, "recreating the group failed");
                        pause(&q, backoff.next()).await;
                        break;
                    }
                }
                sweep = Some(false);
            }
            ReadEnd::Failed(e) => {
                metrics::redis_error(q.queue.name(), "read");
                warn!(queue = q.queue.name(), error = %e, "read failed; reconnecting");
                discard(&mut reader);
                sweep = Some(false);
                drop(permits);
                pause(&q, backoff.next()).await;
            }
            ReadEnd::Stalled => {
                metrics::fetch_stalled(q.queue.name());
                warn!(
                    queue = q.queue.name(),
                    limit = ?(block + READ_MARGIN),
                    "read got no reply in time: closing its connection and taking a new one"
                );
                discard(&mut reader);
                sweep = Some(false);
            }
        }
    }
    q.progress.waiting(true);
    info!(queue = q.queue.name(), "stopped claiming");
}

/// The reader connection, taken from the pool when there is none.
async fn reader_or_connect<'a>(
    q: &QueueCtx,
    pool: &Readers,
    reader: &'a mut Option<Reader>,
) -> Option<&'a mut Reader> {
    if reader.is_none() {
        *reader = Some(connect(q, pool).await?);
    }
    reader.as_mut()
}

/// How a take across lanes ended.
enum Taking {
    /// Entries were found and started (or handed back, seen again).
    Started,
    /// Entries were found after shutdown began and handed back: stop.
    Stopped,
    /// Nothing new in any lane: the lanes as read and their group
    /// positions (in that order), to wait after.
    Empty(Vec<Priority>, Vec<String>),
    Failed(QueueError),
}

/// The non-blocking read across lanes (`take.lua`, on the command
/// connection), highest lane first or in the weighted order; starts what it
/// finds on each entry's lane.
async fn take(
    q: &QueueCtx,
    lanes: &[Arc<QueueCtx>],
    permits: &mut Vec<OwnedSemaphorePermit>,
) -> Taking {
    let order: Vec<Priority> = read_order(lanes, q.cfg.lane_weights)
        .into_iter()
        .map(|i| lanes[i].queue.priority())
        .collect();
    let mut conn = q.conn();
    let taken = match q
        .queue
        .take(&mut conn, &q.consumer, &order, permits.len())
        .await
    {
        Ok(t) => t,
        Err(e) => return Taking::Failed(e),
    };
    if taken.entries.is_empty() {
        return Taking::Empty(order, taken.positions);
    }
    let lane_of = |p: Priority| lanes.iter().find(|l| l.queue.priority() == p);
    if q.stop.is_cancelled() {
        for lane in lanes {
            let mine: Vec<Delivery> = taken
                .entries
                .iter()
                .filter(|(p, _)| *p == lane.queue.priority())
                .map(|(_, d)| d.clone())
                .collect();
            hand_back(lane, mine).await;
        }
        return Taking::Stopped;
    }
    for (p, d) in taken.entries {
        let (Some(lane), Some(permit)) = (lane_of(p), permits.pop()) else {
            break;
        };
        if let Err(permit) = run::start(lane, d, permit) {
            permits.push(permit);
        }
    }
    Taking::Started
}

/// The own-pending sweep of every lane; false when one could not be done.
async fn sweep_lanes(
    lanes: &[Arc<QueueCtx>],
    permits: &mut Vec<OwnedSemaphorePermit>,
    claim: bool,
) -> bool {
    let mut all = true;
    for lane in lanes {
        all &= own_sweep(lane, permits, claim).await;
    }
    all
}

/// Takes a reader connection from the pool and asks for its client id.
async fn connect(q: &QueueCtx, pool: &Readers) -> Option<Reader> {
    let get = tokio::time::timeout(q.cfg.block + READ_MARGIN, pool.get(&q.queue.keys().stream));
    let mut conn = match get.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            metrics::redis_error(q.queue.name(), "connect");
            warn!(queue = q.queue.name(), error = %e, "cannot get a reader connection");
            return None;
        }
        Err(_) => {
            metrics::redis_error(q.queue.name(), "connect");
            warn!(
                queue = q.queue.name(),
                "getting a reader connection timed out"
            );
            return None;
        }
    };
    let id = conn.client_id(&q.queue.keys().stream);
    let id = match tokio::time::timeout(q.cfg.block + READ_MARGIN, id).await {
        Ok(Ok(id)) => Some(id),
        Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error() || e.is_timeout() => {
            conn.discard();
            metrics::redis_error(q.queue.name(), "connect");
            warn!(queue = q.queue.name(), error = %e, "reader connection broken");
            return None;
        }
        Ok(Err(e)) => {
            debug!(queue = q.queue.name(), error = %e, "CLIENT ID refused: reads end at BLOCK only");
            None
        }
        Err(_) => {
            conn.discard();
            metrics::redis_error(q.queue.name(), "connect");
            warn!(
                queue = q.queue.name(),
                "reader connection did not answer: replacing it"
            );
            return None;
        }
    };
    Some(Reader { conn, id })
}

/// Closes a broken or stalled reader connection instead of returning it to
/// the pool (a connection still blocked on the server would receive entries
/// meant for nobody).
fn discard(reader: &mut Option<Reader>) {
    if let Some(r) = reader.take() {
        r.conn.discard();
    }
}

/// One blocking call on the reader connection (a read of new entries, or
/// the wait across lanes). Shutdown and pause end it early through
/// `CLIENT UNBLOCK`, and its reply is still awaited: the call is never
/// dropped while the server may deliver to it, except when it stalls (then
/// its connection is closed by the caller).
async fn blocking<F>(q: &QueueCtx, id: Option<i64>, block: Duration, call: F) -> ReadEnd
where
    F: Future<Output = Result<Vec<Delivery>, QueueError>>,
{
    tokio::pin!(call);
    let deadline = tokio::time::sleep(block + READ_MARGIN);
    tokio::pin!(deadline);
    // None: not interrupted; Some(true): keep asking the server to unblock.
    let mut unblock: Option<bool> = None;
    loop {
        tokio::select! {
            biased;
            result = &mut call => {
                return match result {
                    Ok(d) => ReadEnd::Entries(d),
                    Err(e) => ReadEnd::Failed(e),
                };
            }
            () = &mut deadline => return ReadEnd::Stalled,
            () = q.stop.cancelled(), if unblock.is_none() => unblock = Some(true),
            () = q.interrupt.notified(), if unblock.is_none() => unblock = Some(true),
            () = tokio::time::sleep(UNBLOCK_RETRY), if unblock == Some(true) => {}
        }
        if unblock == Some(true) {
            unblock = Some(ask_unblock(q, id).await);
        }
    }
}

/// Asks the server to end the blocked read of client `id`. Returns whether
/// to ask again (the read was not blocked yet); false once it worked, or
/// when it cannot work (no id, or `CLIENT UNBLOCK` refused): the read then
/// ends at its BLOCK.
async fn ask_unblock(q: &QueueCtx, id: Option<i64>) -> bool {
    let Some(id) = id else { return false };
    let mut conn = q.conn();
    let mut unblock = redis::cmd("CLIENT");
    unblock.arg("UNBLOCK").arg(id);
    let done: redis::RedisResult<i64> = conn.query_at(&unblock, &q.queue.keys().stream).await;
    match done {
        Ok(1) => false,
        Ok(_) => true,
        Err(e) => {
            debug!(queue = q.queue.name(), error = %e, "CLIENT UNBLOCK failed: waiting for the read's BLOCK");
            false
        }
    }
}

/// Hands entries delivered after shutdown began back to the ready stream
/// at once, so another worker runs them now; any left (Redis error) are
/// handed back by the final sweep or reclaimed.
async fn hand_back(q: &QueueCtx, deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    let ids: Vec<String> = deliveries.into_iter().map(|d| d.entry_id).collect();
    let mut conn = q.conn();
    match q
        .queue
        .release(&mut conn, &q.consumer, &ids, q.cfg.dead_retention)
        .await
    {
        Ok(n) => info!(
            queue = q.queue.name(),
            handed_back = n,
            "handed back entries read while stopping"
        ),
        Err(e) => {
            warn!(queue = q.queue.name(), error = %e, "hand-back failed; the final sweep tries again")
        }
    }
}

/// Starts this consumer's own pending entries that are not running here
/// (delivered to a read whose reply was lost), into the reserved slots.
/// Each is first marked in flight (skipped if it already was), then the
/// script keeps only those still pending for this consumer: an ack that
/// landed before the check removed it, one that lands after finds it
/// marked. `claim` raises their delivery count (start of a process).
/// Returns false when Redis could not be asked (sweep again later).
async fn own_sweep(
    q: &Arc<QueueCtx>,
    permits: &mut Vec<OwnedSemaphorePermit>,
    claim: bool,
) -> bool {
    if permits.is_empty() {
        return true;
    }
    let mut conn = q.conn();
    let ids = match q.queue.pending_of(&mut conn, &q.consumer, OWN_SWEEP).await {
        Ok(ids) => ids,
        Err(e) if e.is_no_group() => return true,
        Err(e) => {
            metrics::redis_error(q.queue.name(), "pending");
            warn!(queue = q.queue.name(), error = %e, "cannot list own pending entries");
            return false;
        }
    };
    let mut tracked = Vec::new();
    for id in ids {
        if tracked.len() >= permits.len() {
            break;
        }
        if let Some(token) = q.track(&id) {
            tracked.push((id, token));
        }
    }
    if tracked.is_empty() {
        return true;
    }
    let want: Vec<String> = tracked.iter().map(|(id, _)| id.clone()).collect();
    let found = q
        .queue
        .own_entries(&mut conn, &q.consumer, &want, claim)
        .await;
    let mut found: HashMap<String, Delivery> = match found {
        Ok(list) => list.into_iter().map(|d| (d.entry_id.clone(), d)).collect(),
        Err(e) => {
            metrics::redis_error(q.queue.name(), "pending");
            warn!(queue = q.queue.name(), error = %e, "cannot read own pending entries");
            let mut inflight = q.inflight();
            for (id, _) in &tracked {
                inflight.remove(id);
            }
            return false;
        }
    };
    let mut started = 0;
    for (id, token) in tracked {
        match (found.remove(&id), permits.pop()) {
            (Some(d), Some(permit)) => {
                started += 1;
                run::spawn_tracked(q, d, permit, token);
            }
            (_, permit) => {
                permits.extend(permit);
                q.inflight().remove(&id);
            }
        }
    }
    if started > 0 {
        info!(
            queue = q.queue.name(),
            started, claim, "started own pending entries"
        );
    }
    true
}

/// Waits for at least one free slot and takes every free slot, up to
/// `cap`. `None` when stopping.
async fn reserve(q: &QueueCtx, cap: usize) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        p = q.slots.clone().acquire_owned() => p.ok()?,
        () = q.stop.cancelled() => return None,
    };
    let mut permits = Vec::with_capacity(q.slots.available_permits().min(cap) + 1);
    permits.push(first);
    while permits.len() < cap
        && let Ok(p) = q.slots.clone().try_acquire_owned()
    {
        permits.push(p);
    }
    Some(permits)
}

async fn pause(q: &QueueCtx, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = q.stop.cancelled() => {}
    }
}
