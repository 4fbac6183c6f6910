//! Read-only inspection of queues for operators (the `millrace` CLI): queue
//! statistics, pending entries, delayed and dead jobs, consumers, and
//! finding one job wherever it is. Nothing here writes to Redis, and the
//! worker never calls it: it is not on the hot path.
//!
//! Every listing works in bounded pages (`XPENDING`/`XRANGE ... COUNT`,
//! `HSCAN`), so inspecting a queue with a million jobs neither blocks Redis
//! nor loads everything into memory.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use crate::envelope::Envelope;
use crate::error::QueueError;
use crate::keys::registry_key;
use crate::queue::{Queue, duration_ms};

/// Entries fetched per round trip when scanning a stream or a hash.
pub const PAGE: usize = 500;
/// The delayed set is split into scheduled and retrying jobs only up to
/// this many entries (it takes a scan of the jobs hash); above it
/// [`QueueStats::retrying`] is `None`.
pub const RETRYING_SCAN_LIMIT: u64 = 100_000;

/// One stream entry with its fields as text (lossy UTF-8), in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawEntry {
    /// Stream entry id (`ms-seq`).
    pub id: String,
    /// The entry's fields, in order.
    pub fields: Vec<(String, String)>,
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

/// Counts and ages of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue's name.
    pub name: String,
    /// Entries waiting for a worker (in the stream, not yet delivered).
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
    /// Jobs processed successfully (counter).
    pub processed: u64,
    /// Failed attempts scheduled for a retry (counter).
    pub retried: u64,
    /// Jobs dead-lettered (counter; the dead stream may have been trimmed).
    pub dead_lettered: u64,
}

/// One pending (in-flight) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingEntry {
    /// Stream entry id.
    pub entry_id: String,
    /// The consumer that holds it.
    pub consumer: String,
    /// Time since it was last delivered or its lease renewed, in ms.
    pub idle_ms: u64,
    /// How many times it was delivered.
    pub deliveries: u64,
    /// The entry's fields; `None` when the entry was deleted while pending.
    pub entry: Option<RawEntry>,
}

/// Which pending entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingFilter {
    /// Only entries held by this consumer.
    pub consumer: Option<String>,
    /// Only entries idle at least this long.
    pub min_idle: Duration,
    /// Only jobs with this name.
    pub job: Option<String>,
}

impl PendingFilter {
    /// A filter on consumer, minimum idle time and job name.
    pub fn new(consumer: Option<String>, min_idle: Duration, job: Option<String>) -> Self {
        Self {
            consumer,
            min_idle,
            job,
        }
    }

    fn keeps(&self, p: &PendingEntry) -> bool {
        match &self.job {
            None => true,
            Some(job) => p
                .entry
                .as_ref()
                .and_then(|e| e.get("name"))
                .is_some_and(|n| n == job),
        }
    }
}

/// A delayed job: scheduled for later, or waiting to be retried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DelayedJob {
    /// Job id.
    pub id: String,
    /// When it becomes ready (unix ms).
    pub due_ms: u64,
    /// Its stored fields; `None` when the envelope is missing.
    pub fields: Option<Vec<(String, String)>>,
}

impl DelayedJob {
    /// The value of field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.as_ref().and_then(|f| {
            f.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
    }

    /// True when it waits for a retry (it has failed before).
    pub fn is_retry(&self) -> bool {
        is_retry_fields(self.fields.as_deref().unwrap_or_default())
    }
}

fn is_retry_fields(fields: &[(String, String)]) -> bool {
    fields
        .iter()
        .any(|(k, v)| k == "error" || (k == "attempt" && v.parse::<u32>().is_ok_and(|a| a > 1)))
}

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

/// Where a job was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// In the ready stream, waiting for a worker.
    Ready(RawEntry),
    /// In the ready stream and delivered: running (or stuck).
    InFlight {
        /// The entry.
        entry: RawEntry,
        /// Its consumer.
        consumer: String,
        /// Idle time in ms.
        idle_ms: u64,
        /// Delivery count.
        deliveries: u64,
    },
    /// Pending, but its entry was deleted: nothing left to run.
    PendingDeleted {
        /// Entry id.
        entry_id: String,
        /// Its consumer.
        consumer: String,
    },
    /// In the delayed set (scheduled or retrying).
    Delayed(DelayedJob),
    /// In the dead-letter stream.
    Dead(RawEntry),
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

/// Counts and ages of `queue`, in a few round trips (plus a bounded scan of
/// the delayed jobs to split scheduled from retrying).
pub async fn stats<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<QueueStats, QueueError> {
    let k = queue.keys();
    let now = server_now_ms(conn).await?;
    let (xlen, delayed, dead, paused, counters): (u64, u64, u64, bool, HashMap<String, u64>) =
        redis::pipe()
            .cmd("XLEN")
            .arg(&k.stream)
            .cmd("ZCARD")
            .arg(&k.delayed)
            .cmd("XLEN")
            .arg(&k.dead)
            .cmd("EXISTS")
            .arg(&k.paused)
            .cmd("HGETALL")
            .arg(&k.stats)
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
    let retrying = if delayed <= RETRYING_SCAN_LIMIT {
        Some(count_retrying(conn, &k.jobs).await?)
    } else {
        None
    };
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    Ok(QueueStats {
        name: queue.name().to_owned(),
        ready,
        in_flight,
        scheduled: delayed.saturating_sub(retrying.unwrap_or(0)),
        retrying,
        dead,
        consumers,
        lag_ms,
        oldest_ms,
        paused,
        processed: counter("processed"),
        retried: counter("retried"),
        dead_lettered: counter("dead"),
    })
}

struct GroupInfo {
    pending: u64,
    consumers: u64,
    last_delivered: String,
}

/// XINFO GROUPS for the queue's group; `None` when the stream or the group
/// does not exist.
async fn group_info<C: ConnectionLike + Send>(
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

fn is_missing_key(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
        || e.detail().is_some_and(|d| d.contains("no such key"))
        || e.to_string().contains("no such key")
}

/// A flat `[k, v, k, v]` (or map) reply as a map of text.
fn to_map(v: Value) -> HashMap<String, String> {
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

fn text(v: Value) -> Option<String> {
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
            Some(RawEntry { id, fields })
        })
        .collect()
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

async fn first_entry<C: ConnectionLike + Send>(
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

/// A stored envelope (JSON array of flat fields) as pairs.
fn parse_stored(json: &str) -> Vec<(String, String)> {
    let flat: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    let as_text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    flat.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (as_text(&c[0]), as_text(&c[1])))
        .collect()
}

/// Up to `limit` pending entries matching `filter`, oldest entry first,
/// read in pages of [`PAGE`].
pub async fn pending<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    filter: &PendingFilter,
    limit: usize,
) -> Result<Vec<PendingEntry>, QueueError> {
    let mut out = Vec::new();
    let mut cursor = "-".to_owned();
    while out.len() < limit {
        let page = pending_page(conn, queue, filter, &cursor, PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = format!("({}", last.entry_id);
        let full = page.len() < PAGE;
        out.extend(page.into_iter().filter(|p| filter.keeps(p)));
        if full {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// One page of pending entries after `cursor` (an XPENDING start, e.g.
/// `-` or `(1700-0`), filtered by consumer and idle time (not by job name:
/// see [`PendingFilter`]), with their fields.
pub async fn pending_page<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    filter: &PendingFilter,
    cursor: &str,
    count: usize,
) -> Result<Vec<PendingEntry>, QueueError> {
    let k = queue.keys();
    let mut cmd = redis::cmd("XPENDING");
    cmd.arg(&k.stream)
        .arg(queue.group())
        .arg("IDLE")
        .arg(duration_ms(filter.min_idle))
        .arg(cursor)
        .arg("+")
        .arg(count.max(1));
    if let Some(c) = &filter.consumer {
        cmd.arg(c);
    }
    let rows: Result<Vec<(String, String, u64, u64)>, redis::RedisError> =
        cmd.query_async(conn).await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) if is_missing_key(&e) => return Ok(Vec::new()),
        Err(e) => return Err(QueueError::redis("xpending")(e)),
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for r in &rows {
        pipe.cmd("XRANGE").arg(&k.stream).arg(&r.0).arg(&r.0);
    }
    let entries: Vec<Value> = pipe
        .query_async(conn)
        .await
        .map_err(QueueError::redis("xrange"))?;
    Ok(rows
        .into_iter()
        .zip(entries)
        .map(
            |((entry_id, consumer, idle_ms, deliveries), e)| PendingEntry {
                entry_id,
                consumer,
                idle_ms,
                deliveries,
                entry: parse_range(e).pop(),
            },
        )
        .collect())
}

/// Total pending entries of the queue's group (0 when it has no group).
pub async fn pending_count<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<u64, QueueError> {
    Ok(group_info(conn, queue).await?.map_or(0, |g| g.pending))
}

/// One page of delayed jobs, by due time, starting at index `offset`.
pub async fn delayed_page<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    offset: usize,
    count: usize,
) -> Result<Vec<DelayedJob>, QueueError> {
    let k = queue.keys();
    let stop = offset + count.max(1) - 1;
    let ids: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&k.delayed)
        .arg(offset)
        .arg(stop)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .map_err(QueueError::redis("zrange"))?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let envs: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&k.jobs)
        .arg(ids.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
        .query_async(conn)
        .await
        .map_err(QueueError::redis("hmget"))?;
    Ok(ids
        .into_iter()
        .zip(envs)
        .map(|((id, due), env)| DelayedJob {
            id,
            due_ms: due as u64,
            fields: env.map(|e| parse_stored(&e)),
        })
        .collect())
}

/// Number of jobs in the delayed set.
pub async fn delayed_count<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<u64, QueueError> {
    redis::cmd("ZCARD")
        .arg(&queue.keys().delayed)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("zcard"))
}

/// One delayed job by id.
pub async fn delayed_job<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    id: &str,
) -> Result<Option<DelayedJob>, QueueError> {
    let k = queue.keys();
    let (env, due): (Option<String>, Option<f64>) = redis::pipe()
        .cmd("HGET")
        .arg(&k.jobs)
        .arg(id)
        .cmd("ZSCORE")
        .arg(&k.delayed)
        .arg(id)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("delayed job"))?;
    Ok(due.map(|due| DelayedJob {
        id: id.to_owned(),
        due_ms: due as u64,
        fields: env.map(|e| parse_stored(&e)),
    }))
}

/// The group's consumers joined with the heartbeat set, by name.
pub async fn consumers<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<Vec<ConsumerInfo>, QueueError> {
    let k = queue.keys();
    let now = server_now_ms(conn).await?;
    let reply: Result<Vec<Value>, redis::RedisError> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&k.stream)
        .arg(queue.group())
        .query_async(conn)
        .await;
    let infos = match reply {
        Ok(v) => v,
        Err(e) if is_missing_key(&e) => Vec::new(),
        Err(e) => return Err(QueueError::redis("xinfo consumers")(e)),
    };
    let beats: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&k.workers)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .map_err(QueueError::redis("workers"))?;
    let mut beats: HashMap<String, u64> = beats.into_iter().map(|(n, s)| (n, s as u64)).collect();
    let mut out = Vec::new();
    for info in infos {
        let map = to_map(info);
        let Some(name) = map.get("name").cloned() else {
            continue;
        };
        let num = |k: &str| map.get(k).and_then(|v| v.parse::<u64>().ok());
        let beat = beats.remove(&name);
        out.push(ConsumerInfo {
            pending: num("pending").unwrap_or(0),
            idle_ms: num("idle"),
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

/// Finds a job by job id or stream entry id: in the delayed set, the ready
/// stream (ready or in flight) and the dead-letter stream. A job id needs a
/// scan of both streams (in pages of [`PAGE`]); an entry id is a direct
/// look-up. Returns every place it was found (a replayed job may also have
/// an older dead entry).
pub async fn find<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    id: &str,
) -> Result<Vec<Location>, QueueError> {
    let k = queue.keys();
    let mut found = Vec::new();
    if is_entry_id(id) {
        if let Some(e) = entry(conn, &k.stream, id).await? {
            found.push(locate_stream_entry(conn, queue, e).await?);
        } else if let Some(p) = pending_info(conn, queue, id).await? {
            found.push(Location::PendingDeleted {
                entry_id: id.to_owned(),
                consumer: p.0,
            });
        }
        if let Some(e) = entry(conn, &k.dead, id).await? {
            found.push(Location::Dead(e));
        }
        return Ok(found);
    }
    if let Some(d) = delayed_job(conn, queue, id).await? {
        found.push(Location::Delayed(d));
    }
    for e in scan_for_job(conn, &k.stream, id).await? {
        found.push(locate_stream_entry(conn, queue, e).await?);
    }
    for e in scan_for_job(conn, &k.dead, id).await? {
        found.push(Location::Dead(e));
    }
    Ok(found)
}

async fn scan_for_job<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    job_id: &str,
) -> Result<Vec<RawEntry>, QueueError> {
    let mut out = Vec::new();
    let mut cursor = "-".to_owned();
    loop {
        let page = range(conn, key, &cursor, "+", PAGE, false).await?;
        let Some(last) = page.last() else { break };
        cursor = format!("({}", last.id);
        let done = page.len() < PAGE;
        out.extend(page.into_iter().filter(|e| e.get("id") == Some(job_id)));
        if done {
            break;
        }
    }
    Ok(out)
}

/// (consumer, idle ms, deliveries) of a pending entry.
async fn pending_info<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    id: &str,
) -> Result<Option<(String, u64, u64)>, QueueError> {
    let rows: Result<Vec<(String, String, u64, u64)>, redis::RedisError> = redis::cmd("XPENDING")
        .arg(&queue.keys().stream)
        .arg(queue.group())
        .arg(id)
        .arg(id)
        .arg(1)
        .query_async(conn)
        .await;
    match rows {
        Ok(mut r) => Ok(r.pop().map(|(_, c, i, d)| (c, i, d))),
        Err(e) if is_missing_key(&e) => Ok(None),
        Err(e) => Err(QueueError::redis("xpending")(e)),
    }
}

async fn locate_stream_entry<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    e: RawEntry,
) -> Result<Location, QueueError> {
    Ok(match pending_info(conn, queue, &e.id).await? {
        Some((consumer, idle_ms, deliveries)) => Location::InFlight {
            entry: e,
            consumer,
            idle_ms,
            deliveries,
        },
        None => Location::Ready(e),
    })
}

/// Filters on dead-letter entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadFilter {
    /// Only jobs with this name.
    pub job: Option<String>,
    /// Only entries whose error contains this text (case-insensitive).
    pub error_contains: Option<String>,
    /// Only entries dead-lettered at or after this unix ms.
    pub since_ms: Option<u64>,
}

impl DeadFilter {
    /// A filter on job name, error text and dead-letter time.
    pub fn new(job: Option<String>, error_contains: Option<String>, since_ms: Option<u64>) -> Self {
        Self {
            job,
            error_contains: error_contains.map(|s| s.to_lowercase()),
            since_ms,
        }
    }

    /// True when no filter is set.
    pub fn is_empty(&self) -> bool {
        self.job.is_none() && self.error_contains.is_none() && self.since_ms.is_none()
    }

    /// True when `e` passes every filter.
    pub fn keeps(&self, e: &RawEntry) -> bool {
        if let Some(job) = &self.job
            && e.get("name") != Some(job.as_str())
        {
            return false;
        }
        if let Some(text) = &self.error_contains
            && !e
                .get("error")
                .is_some_and(|err| err.to_lowercase().contains(text.as_str()))
        {
            return false;
        }
        if let Some(since) = self.since_ms {
            let at = e
                .get("dead_at")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| e.added_ms());
            if at < since {
                return false;
            }
        }
        true
    }

    /// The first entry id worth reading: entries are added when they die,
    /// so nothing older than `since` can match.
    pub fn start(&self) -> String {
        match self.since_ms {
            Some(ms) => format!("{ms}-0"),
            None => "-".to_owned(),
        }
    }
}

/// A cursor over the dead-letter stream in id order, one bounded page at a
/// time, keeping only entries that pass a filter. Entries deleted behind
/// the cursor (replayed, purged) never disturb it.
#[derive(Debug, Clone)]
pub struct DeadScan {
    key: String,
    filter: DeadFilter,
    cursor: String,
    end: String,
    done: bool,
}

impl DeadScan {
    /// A scan of `queue`'s dead-letter stream with `filter`.
    pub fn new(queue: &Queue, filter: DeadFilter) -> Self {
        Self {
            key: queue.keys().dead.clone(),
            cursor: filter.start(),
            end: "+".to_owned(),
            filter,
            done: false,
        }
    }

    /// Stops the scan after entry `last` (inclusive): a bulk operation
    /// touches only what it counted and showed, not entries dead-lettered
    /// while it runs.
    pub fn until(mut self, last: &str) -> Self {
        last.clone_into(&mut self.end);
        self
    }

    /// The next page's matching entries (reading at most `page` entries);
    /// `None` when the stream is exhausted.
    pub async fn next_page<C: ConnectionLike + Send>(
        &mut self,
        conn: &mut C,
        page: usize,
    ) -> Result<Option<Vec<RawEntry>>, QueueError> {
        if self.done {
            return Ok(None);
        }
        let entries = range(conn, &self.key, &self.cursor, &self.end, page, false).await?;
        match entries.last() {
            Some(last) => self.cursor = format!("({}", last.id),
            None => {
                self.done = true;
                return Ok(None);
            }
        }
        if entries.len() < page {
            self.done = true;
        }
        Ok(Some(
            entries
                .into_iter()
                .filter(|e| self.filter.keeps(e))
                .collect(),
        ))
    }
}

/// Up to `limit` dead entries matching `filter`, newest first, reading in
/// pages of [`PAGE`].
pub async fn dead_newest<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    filter: &DeadFilter,
    limit: usize,
) -> Result<Vec<RawEntry>, QueueError> {
    let key = &queue.keys().dead;
    let start = filter.start();
    let mut end = "+".to_owned();
    let mut out = Vec::new();
    while out.len() < limit {
        let page = range(conn, key, &start, &end, PAGE, true).await?;
        let Some(last) = page.last() else { break };
        end = format!("({}", last.id);
        let done = page.len() < PAGE;
        out.extend(page.into_iter().filter(|e| filter.keeps(e)));
        if done {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Number of entries in the dead-letter stream.
pub async fn dead_count<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<u64, QueueError> {
    redis::cmd("XLEN")
        .arg(&queue.keys().dead)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("xlen"))
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

    #[test]
    fn stored_envelopes_tell_retries_from_scheduled_jobs() {
        let retry = parse_stored(r#"["id","a","attempt","2","error","boom"]"#);
        assert!(is_retry_fields(&retry));
        let scheduled = parse_stored(r#"["id","a","attempt","1"]"#);
        assert!(!is_retry_fields(&scheduled));
        assert!(parse_stored("not json").is_empty());
    }

    #[test]
    fn dead_filter_matches_name_error_and_time() {
        let e = RawEntry {
            id: "1000-0".into(),
            fields: vec![
                ("name".into(), "send".into()),
                ("error".into(), "HTTP 500 from upstream".into()),
                ("dead_at".into(), "1000".into()),
            ],
        };
        assert!(DeadFilter::default().keeps(&e));
        assert!(DeadFilter::new(Some("send".into()), Some("http 500".into()), Some(900)).keeps(&e));
        assert!(!DeadFilter::new(Some("other".into()), None, None).keeps(&e));
        assert!(!DeadFilter::new(None, Some("timeout".into()), None).keeps(&e));
        assert!(!DeadFilter::new(None, None, Some(1001)).keeps(&e));
        assert_eq!(DeadFilter::new(None, None, Some(5)).start(), "5-0");
    }
}
