//! Consumers of the group and their heartbeats.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use super::{is_missing_key, server_now_ms, to_map};
use crate::error::QueueError;
use crate::queue::{Queue, duration_ms};

/// A consumer of the queue's group, joined with its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// Consumer name.
    pub name: String,
    /// Entries pending for it.
    pub pending: u64,
    /// Time since its last read or claim, in ms (`None` when it is only in
    /// the heartbeat set, not in the group).
    pub idle_ms: Option<u64>,
    /// Time since its last heartbeat, in ms (`None`: it never sent one).
    pub heartbeat_age_ms: Option<u64>,
}

impl ConsumerInfo {
    /// True when it sent no heartbeat within `dead_after`.
    pub fn is_dead(&self, dead_after: Duration) -> bool {
        self.heartbeat_age_ms
            .is_none_or(|age| age > duration_ms(dead_after))
    }
}

/// The group's consumers joined with the heartbeat set, by name. A
/// consumer of several lanes is one row: its pending entries summed over
/// the lanes, its idle time the shortest.
pub async fn consumers<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<Vec<ConsumerInfo>, QueueError> {
    let k = queue.keys();
    let now = server_now_ms(conn).await?;
    let mut infos = Vec::new();
    for lane in queue.lanes(conn).await? {
        let reply: Result<Vec<Value>, redis::RedisError> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&k.for_lane(lane).stream)
            .arg(queue.group())
            .query_async(conn)
            .await;
        match reply {
            Ok(v) => infos.extend(v),
            Err(e) if is_missing_key(&e) => {}
            Err(e) => return Err(QueueError::redis("xinfo consumers")(e)),
        }
    }
    let beats: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&k.workers)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .map_err(QueueError::redis("workers"))?;
    let mut beats: HashMap<String, u64> = beats.into_iter().map(|(n, s)| (n, s as u64)).collect();
    let mut out: Vec<ConsumerInfo> = Vec::new();
    for info in infos {
        let map = to_map(info);
        let Some(name) = map.get("name").cloned() else {
            continue;
        };
        let num = |k: &str| map.get(k).and_then(|v| v.parse::<u64>().ok());
        let (pending, idle_ms) = (num("pending").unwrap_or(0), num("idle"));
        if let Some(seen) = out.iter_mut().find(|c| c.name == name) {
            // The same consumer in another lane's group.
            seen.pending += pending;
            seen.idle_ms = match (seen.idle_ms, idle_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            continue;
        }
        let beat = beats.remove(&name);
        out.push(ConsumerInfo {
            pending,
            idle_ms,
            heartbeat_age_ms: beat.map(|b| now.saturating_sub(b)),
            name,
        });
    }
    for (name, beat) in beats {
        out.push(ConsumerInfo {
            name,
            pending: 0,
            idle_ms: None,
            heartbeat_age_ms: Some(now.saturating_sub(beat)),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
