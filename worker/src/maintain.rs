//! Upkeep: twice a second, one script call heartbeats in the queue's
//! workers set (on the server's clock) and reads the pause flag
//! (interrupting a blocked read when the queue is paused, so a pause takes
//! effect within about half a second plus one round trip); now and then,
//! remove consumers that are long dead and have nothing pending.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use millrace_core::Conn;
use millrace_core::{Leave, PruneRule};
use tracing::{debug, info, warn};

use crate::metrics;
use crate::state::QueueCtx;

/// How often the pause flag is read and the heartbeat written (one script
/// call: `beat.lua`).
pub(crate) const TICK: Duration = Duration::from_millis(500);
/// Longest time between two looks for dead consumers.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Runs until the stop token fires.
pub(crate) async fn maintain_loop(q: Arc<QueueCtx>) {
    let mut conn = q.conn();
    let mut last_prune = Instant::now();
    let prune_every = PRUNE_EVERY.min(q.cfg.prune_consumers_after / 2);
    loop {
        // Heartbeat and pause flag in one round trip.
        match q.queue.beat(&mut conn, &q.consumer).await {
            Ok(p) => {
                if q.paused.swap(p, Ordering::Relaxed) != p {
                    info!(
                        queue = q.queue.name(),
                        paused = p,
                        "queue pause flag changed"
                    );
                    if p {
                        // End the blocked read now rather than at its BLOCK.
                        q.interrupt.notify_one();
                    }
                }
            }
            Err(e) => {
                metrics::redis_error(q.queue.name(), "heartbeat");
                debug!(queue = q.queue.name(), error = %e, "heartbeat and pause check failed");
            }
        }
        if last_prune.elapsed() >= prune_every {
            last_prune = Instant::now();
            if let Err(e) = prune(&q, &mut conn).await {
                warn!(queue = q.queue.name(), error = %e, "pruning dead consumers failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = q.stop.cancelled() => return,
        }
    }
}

/// Removes consumers idle in the group and silent in the heartbeat set
/// (both on server time) past the threshold, with nothing pending: the
/// checks and the removal are one script, so a live worker is never
/// removed whatever its own clock says.
async fn prune(q: &QueueCtx, conn: &mut Conn) -> Result<(), millrace_core::QueueError> {
    let rule = PruneRule {
        min_idle: q.cfg.prune_consumers_after,
        min_silence: q.cfg.prune_consumers_after,
    };
    let threshold = millrace_core::queue::duration_ms(q.cfg.prune_consumers_after);
    for c in millrace_core::inspect::consumers(conn, &q.queue).await? {
        // Candidates only; the script decides, atomically.
        let silent = c.heartbeat_age_ms.is_none_or(|age| age >= threshold);
        let idle = c.idle_ms.is_none_or(|idle| idle >= threshold);
        if c.name == *q.consumer || c.pending > 0 || !silent || !idle {
            continue;
        }
        if q.queue.prune_consumer(conn, &c.name, rule).await? == Leave::Removed {
            info!(queue = q.queue.name(), consumer = %c.name, "removed a dead consumer");
        }
    }
    Ok(())
}
