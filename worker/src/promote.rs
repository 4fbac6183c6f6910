//! The promoter: moves due delayed jobs and retries to the ready stream. It
//! sleeps until the next job is due (at most `promote_every`), and wakes at
//! once when this worker schedules a retry. Any number of workers may run
//! it: the script is atomic.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::metrics;
use crate::state::QueueCtx;

/// Most jobs moved by one script call, so one call never blocks Redis long.
const PROMOTE_BATCH: usize = 1000;

/// Runs until the stop token fires.
pub(crate) async fn promote_loop(q: Arc<QueueCtx>) {
    let mut conn = q.conn();
    let mut backoff = Backoff::default();
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = q.promote_now.notified() => {}
            () = q.stop.cancelled() => return,
        }
        match q
            .queue
            .promote(&mut conn, PROMOTE_BATCH, q.cfg.dead_retention)
            .await
        {
            Ok(p) => {
                backoff.reset();
                if p.dead > 0 {
                    warn!(
                        queue = q.queue.name(),
                        dead = p.dead,
                        "dead-lettered stored envelopes that could not be promoted"
                    );
                }
                if p.moved > 0 {
                    metrics::promoted(q.queue.name(), p.moved);
                    debug!(queue = q.queue.name(), moved = p.moved, "promoted due jobs");
                }
                wait = if (p.moved + p.dead) as usize >= PROMOTE_BATCH {
                    Duration::ZERO
                } else {
                    p.next_due_in
                        .unwrap_or(q.cfg.promote_every)
                        .clamp(Duration::from_millis(1), q.cfg.promote_every)
                };
            }
            Err(e) => {
                metrics::redis_error(q.queue.name(), "promote");
                warn!(queue = q.queue.name(), error = %e, "promote failed");
                wait = backoff.next();
            }
        }
    }
}
