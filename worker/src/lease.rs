//! Leases. The renewer resets the idle time of every entry this worker is
//! running (only where it still owns it), so a long job is never taken
//! over while its worker lives; an entry found lost has its attempt
//! cancelled. Reclaim takes over entries idle past the lease (their worker
//! crashed, froze or lost its network) into free slots, and dead-letters
//! entries delivered `max_deliveries` times without outcome. A renewal
//! also brings back the entries marked for cancellation (`millrace
//! cancel`): their attempts are cancelled and end as `cancelled`.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics;
use crate::run;
use crate::state::QueueCtx;

/// Most entries claimed in one reclaim round.
const RECLAIM_BATCH: usize = 100;
/// Most entries renewed by one script call.
const RENEW_BATCH: usize = 500;

/// Renews leases every `renew_every` until `done` fires (after the running
/// jobs have finished at shutdown).
pub(crate) async fn renew_loop(q: Arc<QueueCtx>, done: CancellationToken) {
    let mut conn = q.conn();
    loop {
        tokio::select! {
            () = tokio::time::sleep(q.cfg.renew_every) => {}
            () = done.cancelled() => return,
        }
        let ids: Vec<String> = q.inflight().keys().cloned().collect();
        for chunk in ids.chunks(RENEW_BATCH) {
            match q.queue.renew_leases(&mut conn, &q.consumer, chunk).await {
                Ok(r) => {
                    metrics::renewed(q.queue.name(), (chunk.len() - r.lost.len()) as u64);
                    for id in r.lost {
                        if let Some(token) = q.inflight().get(&id) {
                            warn!(queue = q.queue.name(), entry = %id, "lease lost; cancelling the attempt");
                            metrics::lease_lost(q.queue.name());
                            token.cancel();
                        }
                    }
                    if !r.cancel.is_empty() {
                        let n = q.cancel_marked(&r.cancel);
                        info!(
                            queue = q.queue.name(),
                            n, "cancel requested; cancelling the attempts"
                        );
                    }
                }
                Err(e) => {
                    metrics::redis_error(q.queue.name(), "renew");
                    warn!(queue = q.queue.name(), error = %e, "lease renewal failed");
                }
            }
        }
    }
}

/// One reclaim round, run by the fetch loop between reads with the slots it
/// has reserved: claims up to that many expired entries and starts them,
/// using (popping) one permit each. Keeping reclaim in the fetch loop makes
/// that loop the one owner of free slots, so a blocked read never starves
/// the reclaimer and the two never claim more than the free slots. Returns
/// true when the round was full (there may be more expired entries).
pub(crate) async fn reclaim_into(
    q: &Arc<QueueCtx>,
    permits: &mut Vec<OwnedSemaphorePermit>,
) -> bool {
    let mut conn = q.conn();
    let want = permits.len().min(RECLAIM_BATCH);
    let result = q
        .queue
        .reclaim(
            &mut conn,
            &q.consumer,
            q.cfg.lease,
            want,
            q.cfg.max_deliveries,
            q.cfg.dead_retention,
        )
        .await;
    match result {
        Ok(r) => {
            let full = r.claimed.len() + r.dead as usize >= want;
            if !r.claimed.is_empty() || r.dead > 0 {
                info!(
                    queue = q.queue.name(),
                    claimed = r.claimed.len(),
                    dead = r.dead,
                    "reclaimed entries with expired leases"
                );
                metrics::reclaimed(q.queue.name(), r.claimed.len() as u64, r.dead);
            }
            for d in r.claimed {
                let Some(permit) = permits.pop() else { break };
                // Our own, still running: the claim just renewed it.
                if let Err(permit) = run::start(q, d, permit) {
                    permits.push(permit);
                }
            }
            full
        }
        Err(e) => {
            metrics::redis_error(q.queue.name(), "reclaim");
            warn!(queue = q.queue.name(), error = %e, "reclaim failed");
            false
        }
    }
}
