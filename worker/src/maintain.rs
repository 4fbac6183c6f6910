//! Upkeep, once a second: heartbeat in the queue's workers set, follow the
//! pause flag, and now and then remove consumers that are long dead and have
//! nothing pending.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tracing::{debug, info, warn};

use crate::metrics;
use crate::state::QueueCtx;

const TICK: Duration = Duration::from_secs(1);
/// Longest time between two looks for dead consumers.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Runs until the stop token fires.
pub(crate) async fn maintain_loop(q: Arc<QueueCtx>) {
    let mut conn = q.conn();
    let mut last_prune = Instant::now();
    let prune_every = PRUNE_EVERY.min(q.cfg.prune_consumers_after / 2);
    loop {
        match q.queue.is_paused(&mut conn).await {
            Ok(p) => {
                if q.paused.swap(p, Ordering::Relaxed) != p {
                    info!(
                        queue = q.queue.name(),
                        paused = p,
                        "queue pause flag changed"
                    );
                }
            }
            Err(e) => {
                metrics::redis_error(q.queue.name(), "paused");
                debug!(queue = q.queue.name(), error = %e, "pause check failed");
            }
        }
        if let Err(e) = q.queue.heartbeat(&mut conn, &q.consumer).await {
            metrics::redis_error(q.queue.name(), "heartbeat");
            debug!(queue = q.queue.name(), error = %e, "heartbeat failed");
        }
        if last_prune.elapsed() >= prune_every {
            last_prune = Instant::now();
            if let Err(e) = prune(&q, &mut conn).await {
                warn!(queue = q.queue.name(), error = %e, "pruning dead consumers failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(TICK.min(prune_every)) => {}
            () = q.stop.cancelled() => return,
        }
    }
}

/// Removes consumers idle and silent (no heartbeat) past the threshold with
/// nothing pending.
async fn prune(
    q: &QueueCtx,
    conn: &mut ConnectionManager,
) -> Result<(), millrace_core::QueueError> {
    let infos: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&q.queue.keys().stream)
        .arg(q.queue.group())
        .query_async(conn)
        .await
        .map_err(millrace_core::QueueError::redis("xinfo consumers"))?;
    let threshold = q.cfg.prune_consumers_after.as_millis() as i64;
    let now = millrace_core::queue::unix_ms(std::time::SystemTime::now()) as i64;
    for info in infos {
        let Ok(map) =
            redis::from_redis_value::<std::collections::HashMap<String, redis::Value>>(info)
        else {
            continue;
        };
        let get = |k: &str| {
            map.get(k)
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
        };
        let name = map
            .get("name")
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .unwrap_or_default();
        let (Some(pending), Some(idle)) = (get("pending"), get("idle")) else {
            continue;
        };
        if name.is_empty() || name == *q.consumer || pending > 0 || idle < threshold {
            continue;
        }
        let beat: Option<f64> = redis::cmd("ZSCORE")
            .arg(&q.queue.keys().workers)
            .arg(&name)
            .query_async(conn)
            .await
            .map_err(millrace_core::QueueError::redis("zscore"))?;
        if beat.is_some_and(|b| now - (b as i64) < threshold) {
            continue;
        }
        if q.queue.remove_consumer(conn, &name).await? {
            info!(queue = q.queue.name(), consumer = %name, "removed a dead consumer");
        }
    }
    Ok(())
}
