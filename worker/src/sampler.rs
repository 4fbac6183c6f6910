//! Per-queue gauges sampled from Redis every few seconds, and the readiness
//! check that comes with them.
//!
//! Each round samples every queue in the registry (`millrace:queues`, at
//! most [`MAX_SAMPLED`]) plus the worker's own: a queue that has jobs but
//! no worker then shows `millrace_queue_consumers 0` beside its backlog,
//! which is what the "no consumers" alert needs. Per queue, three round
//! trips, whatever its number of lanes: the server's `TIME`, the lanes in
//! use and which lane streams exist; per lane `XINFO GROUPS` (the group's
//! pending count and last-delivered id) with `XLEN` and the delayed set's
//! size and due count, then the queue's dead-letter length and live
//! consumers; then, per lane with ready entries, the first entry after the
//! last-delivered id, whose id is the time it became ready. The queue's
//! gauges sum its lanes; `millrace_lane_*` keep each lane's. All of it
//! works on Redis 7.0: no `lag` (unknown on a stream with deleted entries,
//! and ours deletes every acked entry).
//!
//! Every worker samples, so with N replicas a queue's gauges appear N
//! times (one per `instance`): aggregate with `max by (queue, partition)`,
//! never `sum` (a partition's gauges carry a `partition` label).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use millrace_core::Conn;
use millrace_core::keys::registry_key;
use millrace_core::lane::lanes_from_names;
use millrace_core::{Keys, Priority, Queue};
use redis::Value;
use redis::streams::StreamInfoGroupsReply;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::health::{Health, Progress};
use crate::metrics::{self, LaneSample, QueueSample};

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

/// One sample of `q`, over every lane it uses (see `millrace_core::lane`):
/// the queue's gauges are the sums over its lanes (the oldest ready age
/// the largest), and each lane keeps its own ready count and oldest age.
/// A missing stream samples as empty and a missing group as "nothing
/// delivered"; `group_present` is the default lane's (the one every worker
/// declares at start).
pub(crate) async fn sample(q: &Queue, conn: &mut Conn) -> redis::RedisResult<QueueSample> {
    let k = q.keys();
    // Round trip 1: the server's time, the lanes in use, which streams exist.
    let mut p = redis::pipe();
    p.cmd("TIME").cmd("SMEMBERS").arg(&k.lanes);
    for lane in Priority::ALL {
        p.cmd("EXISTS").arg(k.for_lane(lane).stream);
    }
    let ((secs, micros), names, high, default, low): ((u64, u64), Vec<String>, bool, bool, bool) =
        p.query_async(conn).await?;
    let exists = [high, default, low];
    let now_ms = secs * 1000 + micros / 1000;
    let live_since = now_ms.saturating_sub(LIVE_WITHIN.as_millis() as u64);
    let lanes: Vec<(Keys, bool)> = lanes_from_names(&names)
        .into_iter()
        .map(|lane| (k.for_lane(lane), exists[lane.rank()]))
        .collect();

    // Round trip 2: per lane, the group (XINFO GROUPS fails on a missing
    // key: asked only when the stream exists) and the counts; then the
    // queue's dead-letter length and live consumers.
    let mut p = redis::pipe();
    for (lk, exists) in &lanes {
        if *exists {
            p.cmd("XINFO").arg("GROUPS").arg(&lk.stream);
        }
        p.cmd("XLEN")
            .arg(&lk.stream)
            .cmd("ZCARD")
            .arg(&lk.delayed)
            .cmd("ZCOUNT")
            .arg(&lk.delayed)
            .arg("-inf")
            .arg(now_ms);
    }
    p.cmd("XLEN")
        .arg(&k.dead)
        .cmd("ZCOUNT")
        .arg(&k.workers)
        .arg(live_since)
        .arg("+inf");
    let mut replies = p.query_async::<Vec<Value>>(conn).await?.into_iter();
    let mut next = || replies.next().unwrap_or(Value::Nil);
    let mut samples = Vec::with_capacity(lanes.len());
    let mut afters = Vec::with_capacity(lanes.len());
    let mut group_present = false;
    for (lk, exists) in &lanes {
        let groups: Option<StreamInfoGroupsReply> = if *exists {
            Some(redis::from_redis_value(next())?)
        } else {
            None
        };
        let (len, delayed, delayed_due): (u64, u64, u64) = (
            redis::from_redis_value(next())?,
            redis::from_redis_value(next())?,
            redis::from_redis_value(next())?,
        );
        let group = groups
            .as_ref()
            .and_then(|g| g.groups.iter().find(|g| g.name == q.group()));
        if lk.lane == Priority::Default {
            group_present = group.is_some();
        }
        // Acked entries are deleted, so a lane's stream holds exactly its
        // ready and pending entries (saturating: an entry deleted while
        // pending stays in the PEL). Without a group nothing was
        // delivered: all is ready.
        let pending = group.map_or(0, |g| g.pending as u64);
        afters.push(group.map_or_else(|| "-".to_owned(), |g| format!("({}", g.last_delivered_id)));
        samples.push(LaneSample {
            lane: lk.lane,
            ready: len.saturating_sub(pending),
            pending,
            delayed,
            delayed_due,
            oldest_ready_age_ms: 0,
        });
    }
    let dead: u64 = redis::from_redis_value(next())?;
    let consumers: u64 = redis::from_redis_value(next())?;

    // Round trip 3 (only when something is ready): the first entry after
    // each lane's last-delivered id, whose id is when it became ready.
    let waiting: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, l)| l.ready > 0)
        .map(|(i, _)| i)
        .collect();
    if !waiting.is_empty() {
        let mut p = redis::pipe();
        for &i in &waiting {
            p.cmd("XRANGE")
                .arg(&lanes[i].0.stream)
                .arg(&afters[i])
                .arg("+")
                .arg("COUNT")
                .arg(1);
        }
        let firsts: Vec<Vec<(String, Value)>> = p.query_async(conn).await?;
        for (&i, first) in waiting.iter().zip(firsts) {
            samples[i].oldest_ready_age_ms = first
                .first()
                .and_then(|(id, _)| entry_ms(id))
                .map_or(0, |ms| now_ms.saturating_sub(ms));
        }
    }
    Ok(QueueSample::from_lanes(
        samples,
        dead,
        consumers,
        now_ms,
        group_present,
    ))
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
