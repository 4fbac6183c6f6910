//! The fetch loop: reserve free slots, reclaim expired leases into them
//! when a reclaim round is due, read at most the remaining number of
//! entries with a blocking XREADGROUP on a dedicated connection, and start a
//! task per entry. After a start or a reconnect it first reads this consumer's own
//! pending entries, which the server may have delivered while the client
//! was not listening. A missing group (Redis restarted without its data) is
//! recreated from `0`, so nothing is skipped.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use millrace_core::{Delivery, ReadFrom};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::lease;
use crate::metrics;
use crate::run;
use crate::state::QueueCtx;

/// Runs until the stop token fires.
pub(crate) async fn fetch_loop(q: Arc<QueueCtx>, pool: deadpool_redis::Pool) {
    let mut reader: Option<deadpool_redis::Connection> = None;
    let mut from = ReadFrom::OwnPendingAfter("0".to_owned());
    let mut backoff = Backoff::default();
    let mut next_reclaim = Instant::now() + q.cfg.reclaim_every;
    while !q.stop.is_cancelled() {
        if q.paused.load(Ordering::Relaxed) {
            pause(&q, Duration::from_millis(250)).await;
            continue;
        }
        let Some(mut permits) = reserve(&q).await else {
            break;
        };
        if Instant::now() >= next_reclaim {
            // A full round may have left expired entries behind (it had only
            // the slots free at that moment): go again at the next turn.
            let full = lease::reclaim_into(&q, &mut permits).await;
            next_reclaim = if full {
                Instant::now()
            } else {
                Instant::now() + q.cfg.reclaim_every
            };
            if permits.is_empty() {
                continue;
            }
        }
        // Block no longer than until the next reclaim round (BLOCK 0 would
        // mean forever, so at least 1 ms).
        let block = q
            .cfg
            .block
            .min(next_reclaim.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        let conn = match reader.as_mut() {
            Some(c) => c,
            None => match pool.get().await {
                Ok(c) => reader.insert(c),
                Err(e) => {
                    metrics::redis_error(q.queue.name(), "connect");
                    warn!(queue = q.queue.name(), error = %e, "cannot get a reader connection");
                    drop(permits);
                    pause(&q, backoff.next()).await;
                    continue;
                }
            },
        };
        let read = q.queue.read(conn, &q.consumer, permits.len(), block, &from);
        let result = tokio::select! {
            r = read => r,
            () = q.stop.cancelled() => break,
        };
        match result {
            Ok(deliveries) => {
                backoff.reset();
                if let ReadFrom::OwnPendingAfter(_) = from {
                    from = match deliveries.last() {
                        Some(last) => ReadFrom::OwnPendingAfter(last.entry_id.clone()),
                        None => ReadFrom::New,
                    };
                    start_own_pending(&q, deliveries, &mut permits).await;
                    continue;
                }
                for d in deliveries {
                    let Some(permit) = permits.pop() else { break };
                    // Already running here (seen again on a re-read): skip.
                    if let Err(permit) = run::start(&q, d, permit) {
                        permits.push(permit);
                    }
                }
            }
            Err(e) if e.is_no_group() => {
                warn!(
                    queue = q.queue.name(),
                    "consumer group missing (Redis restarted?): recreating it"
                );
                let mut conn = q.conn();
                if let Err(e) = q.queue.declare(&mut conn).await {
                    metrics::redis_error(q.queue.name(), "declare");
                    warn!(queue = q.queue.name(), error = %e, "recreating the group failed");
                    pause(&q, backoff.next()).await;
                }
                from = ReadFrom::OwnPendingAfter("0".to_owned());
            }
            Err(e) => {
                metrics::redis_error(q.queue.name(), "read");
                warn!(queue = q.queue.name(), error = %e, "read failed; reconnecting");
                if let Some(c) = reader.take() {
                    // Never return a broken connection to the pool.
                    drop(deadpool_redis::Connection::take(c));
                }
                from = ReadFrom::OwnPendingAfter("0".to_owned());
                drop(permits);
                pause(&q, backoff.next()).await;
            }
        }
    }
    info!(queue = q.queue.name(), "stopped claiming");
}

/// Starts entries found in this consumer's own pending list after a
/// (re)connect. Such an entry may be one this worker is running, or one it
/// just finished whose ack was written while the read was on its way back:
/// so each is first marked in flight (skipped if it already was), then kept
/// only if it is still pending for this consumer; an ack that landed before
/// the check removed it, and one that lands after it finds it marked.
async fn start_own_pending(
    q: &Arc<QueueCtx>,
    deliveries: Vec<Delivery>,
    permits: &mut Vec<OwnedSemaphorePermit>,
) {
    let (Some(first), Some(last)) = (deliveries.first(), deliveries.last()) else {
        return;
    };
    let (first, last) = (first.entry_id.clone(), last.entry_id.clone());
    let tracked: Vec<(Delivery, CancellationToken)> = deliveries
        .into_iter()
        .filter_map(|d| q.track(&d.entry_id).map(|t| (d, t)))
        .collect();
    if tracked.is_empty() {
        return;
    }
    let mut conn = q.conn();
    let still = q
        .queue
        .pending_between(&mut conn, &q.consumer, &first, &last, tracked.len() + 1024)
        .await;
    let still: HashSet<String> = match still {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => {
            // Cannot tell: leave them to reclaim after their lease.
            metrics::redis_error(q.queue.name(), "pending");
            warn!(queue = q.queue.name(), error = %e, "cannot check own pending entries");
            HashSet::new()
        }
    };
    for (d, token) in tracked {
        match (still.contains(&d.entry_id), permits.pop()) {
            (true, Some(permit)) => run::spawn_tracked(q, d, permit, token),
            (_, permit) => {
                permits.extend(permit);
                q.inflight().remove(&d.entry_id);
            }
        }
    }
}

/// Waits for at least one free slot and takes every free slot, up to the
/// concurrency. `None` when stopping.
async fn reserve(q: &QueueCtx) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        p = q.slots.clone().acquire_owned() => p.ok()?,
        () = q.stop.cancelled() => return None,
    };
    let mut permits = Vec::with_capacity(q.slots.available_permits() + 1);
    permits.push(first);
    while let Ok(p) = q.slots.clone().try_acquire_owned() {
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
