//! The fetch loop: reserve free slots, reclaim expired leases into them
//! when a reclaim round is due, read at most the remaining number of
//! entries with a blocking XREADGROUP on a dedicated connection, and start a
//! task per entry. After a start or a reconnect it first reads this consumer's own
//! pending entries, which the server may have delivered while the client
//! was not listening. A missing group (Redis restarted without its data) is
//! recreated from `0`, so nothing is skipped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use millrace_core::ReadFrom;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::lease;
use crate::metrics;
use crate::run::run_delivery;
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
            lease::reclaim_into(&q, &mut permits).await;
            next_reclaim = Instant::now() + q.cfg.reclaim_every;
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
                }
                for d in deliveries {
                    if q.inflight().contains_key(&d.entry_id) {
                        continue; // already running here (seen again on a re-read)
                    }
                    let Some(permit) = permits.pop() else { break };
                    q.jobs.spawn(run_delivery(q.clone(), d, permit));
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
