//! Counts and ages of a queue.

use std::collections::HashMap;

use redis::Value;
use redis::aio::ConnectionLike;

use super::delayed::{is_retry_fields, parse_stored};
use super::{PAGE, first_entry, is_missing_key, server_now_ms, to_map};
use crate::error::QueueError;
use crate::lane::Priority;
use crate::queue::Queue;

/// The delayed set is split into scheduled and retrying jobs only up to
/// this many entries (it takes a scan of the jobs hash); above it
/// [`QueueStats::retrying`] is `None`.
pub const RETRYING_SCAN_LIMIT: u64 = 100_000;

/// Counts and ages of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue's name.
    pub name: String,
    /// Entries waiting for a worker (in the streams, not yet delivered).
    pub ready: u64,
    /// Entries delivered and not yet acknowledged (the group's PEL).
    pub in_flight: u64,
    /// Jobs scheduled for later that never failed.
    pub scheduled: u64,
    /// Jobs waiting for their next attempt after a failure; `None` when the
    /// delayed set is larger than [`RETRYING_SCAN_LIMIT`] (then
    /// `scheduled` holds the whole delayed count).
    pub retrying: Option<u64>,
    /// Entries in the dead-letter stream.
    pub dead: u64,
    /// Consumers in the group.
    pub consumers: u64,
    /// How long the oldest ready entry has waited for a worker, in ms.
    pub lag_ms: Option<u64>,
    /// Age of the oldest unfinished job in the stream (ready or in flight),
    /// by its enqueue time (or its entry's time when it has none), in ms.
    pub oldest_ms: Option<u64>,
    /// Whether the queue is paused.
    pub paused: bool,
    /// When and why, when paused.
    pub pause: Option<crate::queue::PauseInfo>,
    /// Jobs processed successfully (counter).
    pub processed: u64,
    /// Failed attempts scheduled for a retry (counter).
    pub retried: u64,
    /// Jobs dead-lettered (counter; the dead stream may have been trimmed).
    pub dead_lettered: u64,
    /// The counts of each lane the queue uses, in serving order (only
    /// `default` for a queue without lanes); the fields above are their
    /// totals (lags and ages: the largest).
    pub lanes: Vec<LaneStats>,
}

/// When `all[i]` is the last partition of a partitioned queue in `all`
/// (listed in registry order, so a queue's partitions are together):
/// that queue's name and its members in `all`, the queue itself and its
/// partitions, for a total row after them.
pub fn partition_group_ending_at(all: &[QueueStats], i: usize) -> Option<(&str, Vec<&QueueStats>)> {
    let (base, part) = crate::partition::split_name(&all.get(i)?.name);
    part?;
    let of_base = |name: &str| {
        let (b, p) = crate::partition::split_name(name);
        b == base && p.is_some()
    };
    if all.get(i + 1).is_some_and(|n| of_base(&n.name)) {
        return None;
    }
    let members = all
        .iter()
        .filter(|m| m.name == base || of_base(&m.name))
        .collect();
    Some((base, members))
}

impl QueueStats {
    /// The total of a partitioned queue over `members` (the queue itself
    /// and its partitions), named `<base> (total)`: counts summed, the
    /// worst lag and oldest age, the most consumers, paused only when
    /// every member is; retrying unknown when any member's is.
    pub fn total(base: &str, members: &[&QueueStats]) -> QueueStats {
        let sum = |f: fn(&QueueStats) -> u64| members.iter().map(|m| f(m)).sum::<u64>();
        QueueStats {
            name: format!("{base} (total)"),
            ready: sum(|m| m.ready),
            in_flight: sum(|m| m.in_flight),
            scheduled: sum(|m| m.scheduled),
            retrying: members
                .iter()
                .try_fold(0u64, |acc, m| m.retrying.map(|r| acc + r)),
            dead: sum(|m| m.dead),
            consumers: members.iter().map(|m| m.consumers).max().unwrap_or(0),
            lag_ms: members.iter().filter_map(|m| m.lag_ms).max(),
            oldest_ms: members.iter().filter_map(|m| m.oldest_ms).max(),
            paused: !members.is_empty() && members.iter().all(|m| m.paused),
            pause: None,
            processed: sum(|m| m.processed),
            retried: sum(|m| m.retried),
            dead_lettered: sum(|m| m.dead_lettered),
            lanes: Vec::new(),
        }
    }
}

/// One lane's share of a queue's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LaneStats {
    /// The lane.
    pub lane: Priority,
    /// Entries of its stream waiting for a worker.
    pub ready: u64,
    /// Entries of its stream delivered and not yet acknowledged.
    pub in_flight: u64,
    /// Jobs in its delayed set (scheduled or retrying).
    pub delayed: u64,
    /// How long its oldest ready entry has waited for a worker, in ms.
    pub lag_ms: Option<u64>,
}

/// Counts and ages of `queue` (whichever lane view it is), totals over
/// every lane it uses plus a per-lane breakdown, in a few round trips per
/// lane (plus a bounded scan of the delayed jobs to split scheduled from
/// retrying).
pub async fn stats<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<QueueStats, QueueError> {
    let k = queue.keys();
    let now = server_now_ms(conn).await?;
    type Counts = (u64, Option<String>, HashMap<String, u64>);
    let (dead, paused, counters): Counts = redis::pipe()
        .cmd("XLEN")
        .arg(&k.dead)
        .cmd("GET")
        .arg(&k.paused)
        .cmd("HGETALL")
        .arg(&k.stats)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("stats"))?;
    let mut lanes = Vec::new();
    let (mut consumers, mut oldest_ms) = (0, None);
    for lane in queue.lanes(conn).await? {
        let (l, c, oldest) = lane_stats(conn, &queue.lane(lane), now).await?;
        consumers = consumers.max(c);
        oldest_ms = oldest_ms.max(oldest);
        lanes.push(l);
    }
    let delayed: u64 = lanes.iter().map(|l| l.delayed).sum();
    // The jobs hash is the queue's: this counts the retries of every lane.
    let retrying = if delayed <= RETRYING_SCAN_LIMIT {
        Some(count_retrying(conn, &k.jobs).await?)
    } else {
        None
    };
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    Ok(QueueStats {
        name: queue.name().to_owned(),
        ready: lanes.iter().map(|l| l.ready).sum(),
        in_flight: lanes.iter().map(|l| l.in_flight).sum(),
        scheduled: delayed.saturating_sub(retrying.unwrap_or(0)),
        retrying,
        dead,
        consumers,
        lag_ms: lanes.iter().filter_map(|l| l.lag_ms).max(),
        oldest_ms,
        paused: paused.is_some(),
        pause: paused.map(|v| crate::queue::PauseInfo::parse(&v)),
        processed: counter("processed"),
        retried: counter("retried"),
        dead_lettered: counter("dead"),
        lanes,
    })
}

/// The counts of the lane of lane view `queue`, its group's consumer count
/// and the age of its oldest unfinished entry.
async fn lane_stats<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    now: u64,
) -> Result<(LaneStats, u64, Option<u64>), QueueError> {
    let k = queue.keys();
    let (xlen, delayed): (u64, u64) = redis::pipe()
        .cmd("XLEN")
        .arg(&k.stream)
        .cmd("ZCARD")
        .arg(&k.delayed)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("stats"))?;
    let group = group_info(conn, queue).await?;
    let (in_flight, consumers, last_delivered) = match &group {
        Some(g) => (g.pending, g.consumers, g.last_delivered.clone()),
        None => (0, 0, "0-0".to_owned()),
    };
    let ready = xlen.saturating_sub(in_flight);
    let lag_ms = if ready > 0 {
        first_entry(conn, &k.stream, &format!("({last_delivered}"))
            .await?
            .map(|e| now.saturating_sub(e.added_ms()))
    } else {
        None
    };
    let oldest_ms = first_entry(conn, &k.stream, "-").await?.map(|e| {
        let t = e
            .get("enqueued_at")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| e.added_ms());
        now.saturating_sub(t)
    });
    let lane = LaneStats {
        lane: queue.priority(),
        ready,
        in_flight,
        delayed,
        lag_ms,
    };
    Ok((lane, consumers, oldest_ms))
}

pub(super) struct GroupInfo {
    pub(super) pending: u64,
    pub(super) consumers: u64,
    pub(super) last_delivered: String,
}

/// XINFO GROUPS for the queue's group; `None` when the stream or the group
/// does not exist.
pub(super) async fn group_info<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<Option<GroupInfo>, QueueError> {
    let reply: Result<Vec<Value>, redis::RedisError> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&queue.keys().stream)
        .query_async(conn)
        .await;
    let groups = match reply {
        Ok(g) => g,
        Err(e) if is_missing_key(&e) => return Ok(None),
        Err(e) => return Err(QueueError::redis("xinfo groups")(e)),
    };
    for g in groups {
        let map = to_map(g);
        if map.get("name").map(String::as_str) != Some(queue.group()) {
            continue;
        }
        let num = |k: &str| map.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        return Ok(Some(GroupInfo {
            pending: num("pending"),
            consumers: num("consumers"),
            last_delivered: map
                .get("last-delivered-id")
                .cloned()
                .unwrap_or_else(|| "0-0".into()),
        }));
    }
    Ok(None)
}

async fn count_retrying<C: ConnectionLike + Send>(
    conn: &mut C,
    jobs: &str,
) -> Result<u64, QueueError> {
    let mut cursor = 0u64;
    let mut n = 0;
    loop {
        let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(jobs)
            .arg(cursor)
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("hscan"))?;
        for env in flat.iter().skip(1).step_by(2) {
            if is_retry_fields(&parse_stored(env)) {
                n += 1;
            }
        }
        if next == 0 {
            return Ok(n);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_sums_counts_and_keeps_the_worst_ages() {
        let a = QueueStats {
            name: "orders#0".into(),
            ready: 3,
            dead: 1,
            consumers: 2,
            retrying: Some(1),
            lag_ms: Some(10),
            paused: true,
            processed: 5,
            ..QueueStats::default()
        };
        let b = QueueStats {
            name: "orders#1".into(),
            ready: 4,
            consumers: 3,
            retrying: Some(2),
            oldest_ms: Some(70),
            lag_ms: Some(40),
            processed: 6,
            ..QueueStats::default()
        };
        let t = QueueStats::total("orders", &[&a, &b]);
        assert_eq!(t.name, "orders (total)");
        assert_eq!((t.ready, t.dead, t.processed), (7, 1, 11));
        assert_eq!((t.consumers, t.retrying), (3, Some(3)));
        assert_eq!((t.lag_ms, t.oldest_ms), (Some(40), Some(70)));
        assert!(!t.paused);
        let unknown = QueueStats {
            retrying: None,
            ..b.clone()
        };
        assert_eq!(QueueStats::total("orders", &[&a, &unknown]).retrying, None);
    }

    #[test]
    fn a_group_ends_at_its_last_partition() {
        let all: Vec<QueueStats> = ["emails", "orders", "orders#0", "orders#1", "zeta"]
            .iter()
            .map(|n| QueueStats {
                name: (*n).into(),
                ..QueueStats::default()
            })
            .collect();
        let ends: Vec<_> = (0..all.len())
            .filter_map(|i| partition_group_ending_at(&all, i).map(|(b, m)| (i, b, m.len())))
            .collect();
        assert_eq!(ends, vec![(3, "orders", 3)]);
    }
}
