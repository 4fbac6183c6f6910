//! The ack batcher: finished entries are acknowledged and deleted in one
//! round trip per batch (XACK + XDEL in a script). Under load a batch fills
//! while the previous one is in flight, and before a flush the batcher
//! yields to the running jobs as long as each yield brings more acks; at low
//! load each ack goes alone, so batching adds no latency.

use std::sync::Arc;

use millrace_core::queue::Acked;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::backoff::Backoff;
use crate::metrics;
use crate::state::QueueCtx;

/// Tries to write one batch before giving the entries up to reclaim.
const ACK_TRIES: u32 = 20;
/// Tries once shutting down: a Redis that is down must not hold the exit
/// for minutes; unwritten acks only mean the jobs run again elsewhere.
const ACK_TRIES_AT_SHUTDOWN: u32 = 3;
/// Most times the batcher yields to running jobs before a flush.
const LINGER_YIELDS: usize = 8;

fn drain(rx: &mut mpsc::UnboundedReceiver<Acked>, batch: &mut Vec<Acked>, cap: usize) {
    while batch.len() < cap {
        match rx.try_recv() {
            Ok(id) => batch.push(id),
            Err(_) => break,
        }
    }
}

/// Runs until `done` fires, then flushes what is queued and returns.
pub(crate) async fn ack_loop(
    q: Arc<QueueCtx>,
    mut rx: mpsc::UnboundedReceiver<Acked>,
    done: CancellationToken,
) {
    let cap = q.cfg.ack_batch;
    let mut batch: Vec<Acked> = Vec::with_capacity(cap);
    loop {
        let first = tokio::select! {
            biased;
            id = rx.recv() => id,
            () = done.cancelled() => None,
        };
        let last_round = first.is_none();
        batch.extend(first);
        drain(&mut rx, &mut batch, cap);
        // Let the jobs already running finish and queue their acks before
        // flushing: yielding (no timer, no syscall) while each round brings
        // more gathers the jobs of one read into one flush. At low load
        // nothing more comes and the ack goes at once.
        if !last_round {
            for _ in 0..LINGER_YIELDS {
                let before = batch.len();
                tokio::task::yield_now().await;
                drain(&mut rx, &mut batch, cap);
                if batch.len() == before || batch.len() >= cap {
                    break;
                }
            }
        }
        if !batch.is_empty() {
            flush(&q, &batch).await;
            batch.clear();
        }
        if last_round && rx.is_empty() {
            return;
        }
    }
}

async fn flush(q: &QueueCtx, batch: &[Acked]) {
    let mut conn = q.conn();
    let mut backoff = Backoff::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Shutting down (checked at each try, as it may start mid-batch):
        // give up sooner.
        let tries = if q.stop.is_cancelled() {
            ACK_TRIES_AT_SHUTDOWN
        } else {
            ACK_TRIES
        };
        match q
            .queue
            .ack_finished(&mut conn, &q.consumer, batch, q.cfg.result_ttl)
            .await
        {
            Ok(_) => {
                q.confirm(&mut conn, "acks").await;
                break;
            }
            Err(e) if attempt < tries => {
                metrics::redis_error(q.queue.name(), "ack");
                warn!(queue = q.queue.name(), error = %e, n = batch.len(), "ack failed, retrying");
                tokio::time::sleep(backoff.next()).await;
            }
            Err(e) => {
                metrics::redis_error(q.queue.name(), "ack");
                error!(queue = q.queue.name(), error = %e, n = batch.len(),
                    "ack failed for good; these entries will be reclaimed and run again");
                break;
            }
        }
    }
    let mut inflight = q.inflight();
    for done in batch {
        inflight.remove(&done.entry_id);
    }
}
