//! Per-queue gauges sampled from Redis every few seconds, and the readiness
//! check that comes with them.
//!
//! Each round reads, per queue, in three round trips: the server's `TIME`
//! and whether the stream exists; `XINFO GROUPS` (the group's pending count
//! and last-delivered id) with `XLEN`, the delayed set's size and due
//! count, the dead-letter stream's length and the live consumers; then the
//! first entry after the last-delivered id, whose id is the time it became
//! ready. All of it works on Redis 7.0: no `lag` (it is unknown on a stream
//! with deleted entries, and ours deletes every acked entry).
//!
//! Every worker samples the queues it works, so with N replicas a queue's
//! gauges appear N times (one per `instance`): aggregate with `max by
//! (queue)`, never `sum`.

use std::time::Duration;

use millrace_core::Queue;
use redis::aio::ConnectionManager;
use redis::streams::StreamInfoGroupsReply;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::health::Health;
use crate::metrics::{self, QueueSample};

/// A consumer counts as live when its heartbeat (written every second) is
/// at most this old.
pub(crate) const LIVE_WITHIN: Duration = Duration::from_secs(10);

/// Samples every queue each `every`, until `stop` fires.
pub(crate) async fn sample_loop(
    queues: Vec<Queue>,
    mut conn: ConnectionManager,
    health: Health,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        let mut problems = Vec::new();
        for q in &queues {
            match sample(q, &mut conn).await {
                Ok(Some(s)) => s.record(q.name()),
                Ok(None) => problems.push(format!("queue {}: consumer group missing", q.name())),
                Err(e) => {
                    metrics::redis_error(q.name(), "sample");
                    debug!(queue = q.name(), error = %e, "sampling the queue failed");
                    problems.push(format!("queue {}: Redis check failed", q.name()));
                }
            }
        }
        health.checked((!problems.is_empty()).then(|| problems.join("; ")));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One sample of `q`; `None` when its stream or consumer group is missing.
pub(crate) async fn sample(
    q: &Queue,
    conn: &mut ConnectionManager,
) -> redis::RedisResult<Option<QueueSample>> {
    let k = q.keys();
    let ((secs, micros), exists): ((u64, u64), bool) = redis::pipe()
        .cmd("TIME")
        .cmd("EXISTS")
        .arg(&k.stream)
        .query_async(conn)
        .await?;
    if !exists {
        return Ok(None);
    }
    let now_ms = secs * 1000 + micros / 1000;
    let live_since = now_ms.saturating_sub(LIVE_WITHIN.as_millis() as u64);
    let (groups, len, delayed, delayed_due, dead, consumers): (
        StreamInfoGroupsReply,
        u64,
        u64,
        u64,
        u64,
        u64,
    ) = redis::pipe()
        .cmd("XINFO")
        .arg("GROUPS")
        .arg(&k.stream)
        .cmd("XLEN")
        .arg(&k.stream)
        .cmd("ZCARD")
        .arg(&k.delayed)
        .cmd("ZCOUNT")
        .arg(&k.delayed)
        .arg("-inf")
        .arg(now_ms)
        .cmd("XLEN")
        .arg(&k.dead)
        .cmd("ZCOUNT")
        .arg(&k.workers)
        .arg(live_since)
        .arg("+inf")
        .query_async(conn)
        .await?;
    let Some(group) = groups.groups.iter().find(|g| g.name == q.group()) else {
        return Ok(None);
    };
    // Acked entries are deleted, so the stream holds exactly the ready and
    // the pending entries (saturating: an entry deleted while pending stays
    // in the PEL).
    let pending = group.pending as u64;
    let ready = len.saturating_sub(pending);
    let oldest_ready_age_ms = if ready == 0 {
        0
    } else {
        let first: Vec<(String, redis::Value)> = redis::cmd("XRANGE")
            .arg(&k.stream)
            .arg(format!("({}", group.last_delivered_id))
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        first
            .first()
            .and_then(|(id, _)| entry_ms(id))
            .map_or(0, |ms| now_ms.saturating_sub(ms))
    };
    Ok(Some(QueueSample {
        ready,
        pending,
        delayed,
        delayed_due,
        dead,
        consumers,
        oldest_ready_age_ms,
        sampled_at_ms: now_ms,
    }))
}

/// The milliseconds part of a stream entry id (`<ms>-<seq>`).
fn entry_ms(id: &str) -> Option<u64> {
    id.split_once('-').map_or(id, |(ms, _)| ms).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_give_their_time() {
        assert_eq!(entry_ms("1700000000123-4"), Some(1_700_000_000_123));
        assert_eq!(entry_ms("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(entry_ms("bogus-1"), None);
    }

    #[test]
    fn backlog_counts_ready_pending_and_due_delayed() {
        let s = QueueSample {
            ready: 3,
            pending: 2,
            delayed: 10,
            delayed_due: 4,
            ..QueueSample::default()
        };
        assert_eq!(s.backlog(), 9);
    }
}
