//! Per-queue gauges sampled from Redis every few seconds, and the readiness
//! check that comes with them.
//!
//! Each round samples every queue in the registry (`millrace:queues`, at
//! most [`MAX_SAMPLED`]) plus the worker's own: a queue that has jobs but
//! no worker then shows `millrace_queue_consumers 0` beside its backlog,
//! which is what the "no consumers" alert needs. Per queue, three round
//! trips: the server's `TIME` and whether the stream exists; `XINFO
//! GROUPS` (the group's pending count and last-delivered id) with `XLEN`,
//! the delayed set's size and due count, the dead-letter stream's length
//! and the live consumers; then the first entry after the last-delivered
//! id, whose id is the time it became ready. All of it works on Redis 7.0:
//! no `lag` (unknown on a stream with deleted entries, and ours deletes
//! every acked entry).
//!
//! Every worker samples, so with N replicas a queue's gauges appear N
//! times (one per `instance`): aggregate with `max by (queue)`, never
//! `sum`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use millrace_core::Conn;
use millrace_core::keys::registry_key;
use millrace_core::{Keys, Queue};
use redis::streams::StreamInfoGroupsReply;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::health::{Health, Progress};
use crate::metrics::{self, QueueSample};

/// A consumer counts as live when its heartbeat (written every second) is
/// at most this old.
pub(crate) const LIVE_WITHIN: Duration = Duration::from_secs(10);

/// Most registered queues sampled besides the worker's own (bounds the
/// work per round and the number of series).
pub(crate) const MAX_SAMPLED: usize = 200;

/// Samples every registered queue and the worker's own each `every`, until
/// `stop` fires. Readiness follows the worker's own queues only.
#[allow(clippy::too_many_arguments, reason = "internal, called once")]
pub(crate) async fn sample_loop(
    own: Vec<Queue>,
    progress: Vec<Arc<Progress>>,
    prefix: String,
    mut conn: Conn,
    health: Health,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        for p in &progress {
            metrics::fetch_progress(p.queue(), p.last_progress_unix());
        }
        let mut problems = Vec::new();
        for q in &own {
            match sample(q, &mut conn).await {
                Ok(s) => {
                    s.record(q.name());
                    if !s.group_present {
                        problems.push(format!("queue {}: consumer group missing", q.name()));
                    }
                }
                Err(e) => {
                    metrics::redis_error(q.name(), "sample");
                    debug!(queue = q.name(), error = %e, "sampling the queue failed");
                    problems.push(format!("queue {}: Redis check failed", q.name()));
                }
            }
        }
        health.checked((!problems.is_empty()).then(|| problems.join("; ")));
        for q in others(&own, &prefix, &mut conn).await {
            match sample(&q, &mut conn).await {
                Ok(s) => s.record(q.name()),
                Err(e) => {
                    metrics::redis_error(q.name(), "sample");
                    debug!(queue = q.name(), error = %e, "sampling the queue failed");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Registered queues other than `own` (valid names only, sorted, at most
/// [`MAX_SAMPLED`]).
async fn others(own: &[Queue], prefix: &str, conn: &mut Conn) -> Vec<Queue> {
    let names: BTreeSet<String> = match redis::cmd("SMEMBERS")
        .arg(registry_key(prefix))
        .query_async(conn)
        .await
    {
        Ok(names) => names,
        Err(e) => {
            debug!(error = %e, "reading the queue registry failed");
            return Vec::new();
        }
    };
    names
        .iter()
        .filter(|n| own.iter().all(|q| q.name() != n.as_str()))
        .filter_map(|n| Queue::with_prefix(prefix, n).ok())
        .take(MAX_SAMPLED)
        .collect()
}

/// One sample of `q`. A missing stream samples as empty and a missing
/// group as "nothing delivered", both with `group_present` false.
pub(crate) async fn sample(q: &Queue, conn: &mut Conn) -> redis::RedisResult<QueueSample> {
    let k = q.keys();
    let ((secs, micros), exists): ((u64, u64), bool) = redis::pipe()
        .cmd("TIME")
        .cmd("EXISTS")
        .arg(&k.stream)
        .query_async(conn)
        .await?;
    let now_ms = secs * 1000 + micros / 1000;
    let live_since = now_ms.saturating_sub(LIVE_WITHIN.as_millis() as u64);
    // XINFO GROUPS fails on a missing key: ask only when the stream exists.
    let (groups, (len, delayed, delayed_due, dead, consumers)): (
        Option<StreamInfoGroupsReply>,
        (u64, u64, u64, u64, u64),
    ) = if exists {
        let mut p = redis::pipe();
        p.cmd("XINFO").arg("GROUPS").arg(&k.stream);
        add_counts(&mut p, k, now_ms, live_since);
        let (groups, len, delayed, due, dead, consumers) = p.query_async(conn).await?;
        (Some(groups), (len, delayed, due, dead, consumers))
    } else {
        let mut p = redis::pipe();
        add_counts(&mut p, k, now_ms, live_since);
        (None, p.query_async(conn).await?)
    };
    let group = groups
        .as_ref()
        .and_then(|g| g.groups.iter().find(|g| g.name == q.group()));
    // Acked entries are deleted, so the stream holds exactly the ready and
    // the pending entries (saturating: an entry deleted while pending stays
    // in the PEL). Without a group nothing was delivered: all is ready.
    let pending = group.map_or(0, |g| g.pending as u64);
    let ready = len.saturating_sub(pending);
    let after = group.map_or_else(|| "-".to_owned(), |g| format!("({}", g.last_delivered_id));
    let oldest_ready_age_ms = if ready == 0 {
        0
    } else {
        let first: Vec<(String, redis::Value)> = redis::cmd("XRANGE")
            .arg(&k.stream)
            .arg(after)
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
    Ok(QueueSample {
        ready,
        pending,
        delayed,
        delayed_due,
        dead,
        consumers,
        oldest_ready_age_ms,
        sampled_at_ms: now_ms,
        group_present: group.is_some(),
    })
}

/// Appends the five counts of a sample to `p`: stream length, delayed,
/// delayed and due, dead, live consumers.
fn add_counts(p: &mut redis::Pipeline, k: &Keys, now_ms: u64, live_since: u64) {
    p.cmd("XLEN")
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
        .arg("+inf");
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
