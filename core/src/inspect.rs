//! Read-only inspection of queues for operators (the `millrace` CLI): queue
//! statistics, pending entries, delayed and dead jobs, consumers, and
//! finding one job wherever it is. Nothing here writes to Redis, and the
//! worker never calls it: it is not on the hot path.
//!
//! Every listing works in bounded pages (`XPENDING`/`XRANGE ... COUNT`,
//! `HSCAN`), so inspecting a queue with a million jobs neither blocks Redis
//! nor loads everything into memory.
//!
//! A queue with lanes (see `lane.rs`) is one queue here: [`stats`] totals
//! the lanes and breaks them down, and [`find`], [`pending`], [`ready`],
//! [`delayed_count`], [`delayed_job`] and [`consumers`] span every lane,
//! whichever lane view they are given; the cursor pages ([`pending_page`],
//! [`ready_page`], [`delayed_page`]) read the lane of the view they are
//! given. Every entry, pending entry and delayed job says its lane.

use std::collections::HashMap;

use redis::Value;
use redis::aio::ConnectionLike;

use crate::envelope::Envelope;
use crate::error::QueueError;
use crate::keys::registry_key;
use crate::lane::Priority;

mod consumers;
mod dead;
mod dead_match;
mod delayed;
mod find;
mod page;
mod pending;
mod ready;
mod stats;
mod tries;

pub use consumers::{ConsumerInfo, consumers};
pub use dead::{DeadFilter, DeadScan, dead_count, dead_newest};
pub use dead_match::{DeadMatches, dead_matches};
pub use delayed::{DelayedJob, delayed_count, delayed_job, delayed_page};
pub use find::{Location, find};
pub use page::{DeadPage, compare_entry_ids, dead_page, ready_page};
pub use pending::{PendingEntry, PendingFilter, pending, pending_count, pending_page};
pub use ready::{READY_SCAN_LIMIT, ReadyPage, ready};
pub use stats::{LaneStats, QueueStats, RETRYING_SCAN_LIMIT, partition_group_ending_at, stats};

/// Entries fetched per round trip when scanning a stream or a hash.
pub const PAGE: usize = 500;

/// Fields a view of one job shows under labels of its own (the envelope's
/// and the dead-letter step's); any other field is listed as it is.
pub const LABELLED_FIELDS: &[&str] = &[
    "id",
    "name",
    "payload",
    "attempt",
    "max_attempts",
    "enqueued_at",
    "error",
    "dead_at",
    "entry",
    "v",
    "priority",
];

/// One stream entry with its fields as text (lossy UTF-8), in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawEntry {
    /// Stream entry id (`ms-seq`).
    pub id: String,
    /// The entry's fields, in order.
    pub fields: Vec<(String, String)>,
    /// The lane of the stream it was read from; for a dead entry, the lane
    /// its `priority` field names (`default` without one).
    pub lane: Priority,
}

impl RawEntry {
    /// The value of field `name`, if present (the last one wins).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The entry decoded as an envelope.
    pub fn envelope(&self) -> Result<Envelope, crate::DecodeError> {
        Envelope::decode(
            self.fields
                .iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                .collect(),
        )
    }

    /// The unix ms at which the entry was added (the first part of its id).
    pub fn added_ms(&self) -> u64 {
        entry_ms(&self.id)
    }
}

/// The unix ms part of a stream entry id (0 when malformed).
pub fn entry_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// True when `s` looks like a stream entry id (`123-4` or `123`).
pub fn is_entry_id(s: &str) -> bool {
    let mut parts = s.splitn(2, '-');
    let ms = parts.next().unwrap_or("");
    let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    ok(ms) && parts.next().is_none_or(ok)
}

/// The names of all registered queues under `prefix`, sorted.
pub async fn known_queues<C: ConnectionLike + Send>(
    conn: &mut C,
    prefix: &str,
) -> Result<Vec<String>, QueueError> {
    let mut names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(registry_key(prefix))
        .query_async(conn)
        .await
        .map_err(QueueError::redis("list queues"))?;
    names.sort();
    Ok(names)
}

/// Server time in unix ms (ages are measured on the server's clock).
pub async fn server_now_ms<C: ConnectionLike + Send>(conn: &mut C) -> Result<u64, QueueError> {
    let (s, us): (u64, u64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .map_err(QueueError::redis("time"))?;
    Ok(s * 1000 + us / 1000)
}

pub(crate) fn is_missing_key(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
        || e.detail().is_some_and(|d| d.contains("no such key"))
        || e.to_string().contains("no such key")
}

/// A flat `[k, v, k, v]` (or map) reply as a map of text.
pub(crate) fn to_map(v: Value) -> HashMap<String, String> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(flat) => {
            let mut out = Vec::new();
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        Value::Map(m) => m,
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((text(k)?, text(v).unwrap_or_default())))
        .collect()
}

pub(crate) fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) => Some(s),
        Value::Int(n) => Some(n.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

/// Parses an XRANGE-style reply: `[[id, [f, v, ...]], ...]`.
pub fn parse_range(v: Value) -> Vec<RawEntry> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|e| {
            let Value::Array(mut parts) = e else {
                return None;
            };
            if parts.len() != 2 {
                return None;
            }
            let fields = parts.pop()?;
            let id = text(parts.pop()?)?;
            let fields = match fields {
                Value::Array(flat) => {
                    let mut out = Vec::with_capacity(flat.len() / 2);
                    let mut it = flat.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        out.push((text(k).unwrap_or_default(), text(v).unwrap_or_default()));
                    }
                    out
                }
                Value::Map(m) => m
                    .into_iter()
                    .map(|(k, v)| (text(k).unwrap_or_default(), text(v).unwrap_or_default()))
                    .collect(),
                _ => Vec::new(),
            };
            let lane = lane_field(&fields);
            Some(RawEntry { id, fields, lane })
        })
        .collect()
}

/// The lane a job's `priority` field names (`default` without one or for
/// an unknown name).
fn lane_field(fields: &[(String, String)]) -> Priority {
    fields
        .iter()
        .rev()
        .find(|(k, _)| k == "priority")
        .and_then(|(_, v)| Priority::from_wire(v))
        .unwrap_or_default()
}

/// Marks `entries` as read from the stream of lane `lane`.
pub(crate) fn in_lane(mut entries: Vec<RawEntry>, lane: Priority) -> Vec<RawEntry> {
    for e in &mut entries {
        e.lane = lane;
    }
    entries
}

/// `XRANGE key start end COUNT count` (or XREVRANGE when `rev`).
pub async fn range<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    start: &str,
    end: &str,
    count: usize,
    rev: bool,
) -> Result<Vec<RawEntry>, QueueError> {
    let reply: Value = redis::cmd(if rev { "XREVRANGE" } else { "XRANGE" })
        .arg(key)
        .arg(if rev { end } else { start })
        .arg(if rev { start } else { end })
        .arg("COUNT")
        .arg(count.max(1))
        .query_async(conn)
        .await
        .map_err(QueueError::redis("xrange"))?;
    Ok(parse_range(reply))
}

pub(crate) async fn first_entry<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    start: &str,
) -> Result<Option<RawEntry>, QueueError> {
    Ok(range(conn, key, start, "+", 1, false).await?.pop())
}

/// One entry of a stream by id.
pub async fn entry<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    id: &str,
) -> Result<Option<RawEntry>, QueueError> {
    Ok(range(conn, key, id, id, 1, false).await?.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_told_from_job_ids() {
        assert!(is_entry_id("1700000000000-0"));
        assert!(is_entry_id("1700000000000"));
        assert!(!is_entry_id("0190f2a4-7b1c-7d00-8000-000000000000"));
        assert!(!is_entry_id("12-"));
        assert!(!is_entry_id("-1"));
        assert!(!is_entry_id(""));
    }
}
