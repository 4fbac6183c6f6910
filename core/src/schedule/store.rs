//! Schedules in Redis: one hash per queue (`millrace:{q}:schedules`) with,
//! per schedule name, `def:<name>` (its [`ScheduleDef`] as JSON, written by
//! every worker at start), `last:<name>` (the cursor: every fire time up to
//! it is accounted for), `fired:<name>` (the latest fire time enqueued) and
//! `paused:<name>` (present while paused: the server time it was paused).

use std::collections::BTreeMap;

use redis::Value;
use redis::aio::ConnectionLike;

use super::{Claim, ScheduleDef};
use crate::error::QueueError;
use crate::inspect::{server_now_ms, text};
use crate::queue::Queue;
use crate::reply::protocol;
use crate::scripts;

/// What a claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claimed {
    /// The cursor moved to `cursor` and `enqueued` jobs were added.
    Enqueued {
        /// Jobs added to the ready stream.
        enqueued: u64,
        /// The new cursor (unix ms).
        cursor: u64,
        /// Server time (unix ms).
        now: u64,
    },
    /// The schedule is paused: the cursor moved, nothing was enqueued.
    Paused {
        /// The new cursor (unix ms).
        cursor: u64,
        /// Server time (unix ms).
        now: u64,
    },
    /// Another worker moved the cursor first: plan again from `cursor`.
    Lost {
        /// The cursor found (`None`: the schedule has none).
        cursor: Option<u64>,
        /// Server time (unix ms).
        now: u64,
    },
    /// The new cursor is past the server's clock: too early.
    Early {
        /// Server time (unix ms).
        now: u64,
    },
}

/// A schedule as listed: its definition and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// The schedule's name.
    pub name: String,
    /// Its definition; `None` when absent or undecodable.
    pub def: Option<ScheduleDef>,
    /// The cursor (unix ms).
    pub cursor: Option<u64>,
    /// The latest fire time enqueued (unix ms).
    pub fired: Option<u64>,
    /// When it was paused (unix ms, server time), while paused.
    pub paused_since: Option<u64>,
}

impl ScheduleInfo {
    /// The next fire time (unix ms) after the cursor or `now`, whichever
    /// is later; `None` without a usable definition.
    pub fn next_fire(&self, now: u64) -> Option<u64> {
        self.def
            .as_ref()
            .and_then(|d| d.timing().ok())
            .and_then(|t| t.next_after(self.cursor.unwrap_or(now).max(now)))
    }
}

fn field(kind: &str, name: &str) -> String {
    format!("{kind}:{name}")
}

/// Writes `def` (its queue's hash, field `def:<name>`): a worker does at
/// start, so the CLI can list what workers run. The cursor is left alone.
pub async fn register<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    def: &ScheduleDef,
) -> Result<(), QueueError> {
    let json =
        serde_json::to_string(def).map_err(|e| protocol("register schedule", &e.to_string()))?;
    redis::cmd("HSET")
        .arg(&queue.keys().schedules)
        .arg(field("def", &def.name))
        .arg(json)
        .query_async::<()>(conn)
        .await
        .map_err(QueueError::redis("register schedule"))
}

/// The schedule's cursor and the server's time (unix ms), in one round
/// trip.
pub async fn cursor<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    name: &str,
) -> Result<(Option<u64>, u64), QueueError> {
    let (cursor, (s, us)): (Option<String>, (u64, u64)) = redis::pipe()
        .cmd("HGET")
        .arg(&queue.keys().schedules)
        .arg(field("last", name))
        .cmd("TIME")
        .query_async(conn)
        .await
        .map_err(QueueError::redis("schedule cursor"))?;
    Ok((parse_ms(cursor.as_deref())?, s * 1000 + us / 1000))
}

fn parse_ms(v: Option<&str>) -> Result<Option<u64>, QueueError> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| protocol("schedule cursor", &format!("not a time: {s:?}"))),
    }
}

/// Claims `claim` for schedule `def` in one script (`cron.lua`): if the
/// cursor is still `claim.expected`, moves it and enqueues one job per fire
/// time (id `<name>@<fire ms>`, with fields `schedule` and `fire_at`),
/// unless the schedule is paused.
pub async fn claim<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    def: &ScheduleDef,
    claim: &Claim,
) -> Result<Claimed, QueueError> {
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let mut inv = scripts::CRON.prepare_invoke();
    inv.key(&queue.keys().schedules)
        .key(&queue.keys().stream)
        .arg(&def.name)
        .arg(opt(claim.expected))
        .arg(opt(claim.cursor))
        .arg(claim.fires.len())
        .arg(&claim.fires);
    for (k, v) in def.job_fields() {
        inv.arg(k).arg(v);
    }
    let (code, now, cursor): (i64, u64, String) = inv
        .invoke_async(conn)
        .await
        .map_err(QueueError::redis("schedule claim"))?;
    let cursor = parse_ms(Some(&cursor))?;
    let moved = || cursor.ok_or_else(|| protocol("schedule claim", "no cursor after a claim"));
    Ok(match code {
        -1 => Claimed::Lost { cursor, now },
        -2 => Claimed::Paused {
            cursor: moved()?,
            now,
        },
        -3 => Claimed::Early { now },
        n if n >= 0 => Claimed::Enqueued {
            enqueued: n.unsigned_abs(),
            cursor: moved()?,
            now,
        },
        n => return Err(protocol("schedule claim", &format!("unknown code {n}"))),
    })
}

/// Every schedule of `queue`, by name, read with `HSCAN` in pages.
pub async fn list<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<Vec<ScheduleInfo>, QueueError> {
    let mut by_name: BTreeMap<String, ScheduleInfo> = BTreeMap::new();
    let mut cursor = 0u64;
    loop {
        let (next, flat): (u64, Vec<Value>) = redis::cmd("HSCAN")
            .arg(&queue.keys().schedules)
            .arg(cursor)
            .arg("COUNT")
            .arg(crate::inspect::PAGE)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("list schedules"))?;
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let (Some(k), Some(v)) = (text(k), text(v)) else {
                continue;
            };
            let Some((kind, name)) = k.split_once(':') else {
                continue;
            };
            let info = by_name
                .entry(name.to_owned())
                .or_insert_with(|| ScheduleInfo {
                    name: name.to_owned(),
                    def: None,
                    cursor: None,
                    fired: None,
                    paused_since: None,
                });
            match kind {
                "def" => info.def = serde_json::from_str(&v).ok(),
                "last" => info.cursor = v.parse().ok(),
                "fired" => info.fired = v.parse().ok(),
                "paused" => info.paused_since = Some(v.parse().unwrap_or(0)),
                _ => {}
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(by_name.into_values().collect())
}

/// Pauses (or resumes) schedule `name` of `queue`: a paused schedule's
/// fires are claimed but enqueue nothing, so resuming does not catch up on
/// them. Returns `false` when no worker registered a schedule by that name.
pub async fn set_paused<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    name: &str,
    paused: bool,
) -> Result<bool, QueueError> {
    let key = &queue.keys().schedules;
    let known: bool = redis::cmd("HEXISTS")
        .arg(key)
        .arg(field("def", name))
        .query_async(conn)
        .await
        .map_err(QueueError::redis("pause schedule"))?;
    if !known {
        return Ok(false);
    }
    let cmd = if paused {
        let now = server_now_ms(conn).await?;
        let mut c = redis::cmd("HSET");
        c.arg(key).arg(field("paused", name)).arg(now);
        c
    } else {
        let mut c = redis::cmd("HDEL");
        c.arg(key).arg(field("paused", name));
        c
    };
    cmd.query_async::<()>(conn)
        .await
        .map_err(QueueError::redis("pause schedule"))?;
    Ok(true)
}
