//! The atomic queue operations on one queue's keys. Each is one round trip
//! (a command, a pipeline or a script) and none spawns a task.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;
use redis::aio::ConnectionLike;

use crate::envelope::Envelope;
use crate::error::{ConfigError, QueueError};
use crate::keys::{DEFAULT_GROUP, DEFAULT_PREFIX, Keys};
use crate::reply::{parse_entries, parse_read_reply, protocol};
use crate::scripts;

mod ack;
mod cancel;
mod fail;
mod lanes;
mod unique;
pub use ack::Acked;
pub use cancel::{CANCEL_MARK_LIFE, Cancel};
pub use fail::{FAIL_BATCH, FailOutcome, FailReport, FailedEntry, Failure};
pub use lanes::Taken;
pub use unique::Submit;

use crate::history::HistoryRetention;

/// Where a read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFrom {
    /// New entries never delivered to any consumer (`>`). (A consumer's own
    /// pending entries are read with [`Queue::own_entries`], which, unlike
    /// `XREADGROUP` from an id, does not raise their delivery count.)
    New,
}

/// One stream entry handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Stream entry id.
    pub entry_id: String,
    /// The entry's fields; `None` when the entry was deleted while pending.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// How the dead-letter stream is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadRetention {
    /// Keep about this many entries (0 = no count limit). Defaults to 100,000.
    pub max_len: u64,
    /// Drop entries older than this (zero = no age limit). Defaults to 30 days.
    pub max_age: Duration,
}

impl Default for DeadRetention {
    fn default() -> Self {
        Self {
            max_len: 100_000,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl DeadRetention {
    /// A retention of `max_len` entries and `max_age`.
    pub fn new(max_len: u64, max_age: Duration) -> Self {
        Self { max_len, max_age }
    }
}

/// Result of one promote round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promoted {
    /// Jobs moved to the ready stream.
    pub moved: u64,
    /// Stored envelopes that could not be re-added, dead-lettered instead.
    pub dead: u64,
    /// Time until the next delayed job is due, if any remain.
    pub next_due_in: Option<Duration>,
}

/// Result of one lease renewal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Renewal {
    /// Entries this consumer no longer owns: their attempts are lost.
    pub lost: Vec<String>,
    /// Entries renewed that carry a cancel mark: cancel their attempts.
    pub cancel: Vec<String>,
}

/// Result of one reclaim round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    /// Entries now owned by the reclaiming consumer, to run.
    pub claimed: Vec<Delivery>,
    /// Entries dead-lettered for passing max deliveries.
    pub dead: u64,
}

/// One queue: its keys and its consumer group.
#[derive(Debug, Clone)]
pub struct Queue {
    keys: Keys,
    group: String,
    history: HistoryRetention,
}

impl Queue {
    /// The queue `name` under the default prefix and group.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        Self::with_prefix(DEFAULT_PREFIX, name)
    }

    /// The queue `name` under `prefix`, with the default group.
    pub fn with_prefix(prefix: &str, name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            keys: Keys::new(prefix, name)?,
            group: DEFAULT_GROUP.to_owned(),
            history: HistoryRetention::default(),
        })
    }

    /// The same queue, whose scripts that end a job (ack, dead-letter)
    /// record it in the history stream with `history` (off with
    /// [`HistoryRetention::off`]). Defaults to [`HistoryRetention::default`].
    #[must_use]
    pub fn with_history(mut self, history: HistoryRetention) -> Self {
        self.history = history;
        self
    }

    /// How this queue's finished jobs are recorded.
    pub fn history(&self) -> HistoryRetention {
        self.history
    }

    /// The queue's keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.keys.queue
    }

    /// The consumer group name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Creates the stream and its group if missing (from `0`, so nothing
    /// enqueued earlier is skipped) and registers the queue. Idempotent.
    pub async fn declare<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), QueueError> {
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(QueueError::redis("declare")(e)),
        }
        self.register(conn).await
    }

    /// Adds the queue to the registry of known queues, and a lane view's
    /// lane to the queue's lanes (so workers read it). Two commands, not a
    /// pipeline: on a cluster the registry and the queue's keys live on
    /// different slots.
    pub async fn register<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), QueueError> {
        if let Some(lane) = self.keys.lane.segment() {
            redis::cmd("SADD")
                .arg(&self.keys.lanes)
                .arg(lane)
                .query_async::<()>(conn)
                .await
                .map_err(QueueError::redis("register"))?;
        }
        redis::cmd("SADD")
            .arg(&self.keys.registry)
            .arg(&self.keys.queue)
            .query_async::<()>(conn)
            .await
            .map_err(QueueError::redis("register"))
    }

    /// Appends jobs to the ready stream (of this view's lane, recording the
    /// lane in the queue's lanes), pipelined: one round trip for the whole
    /// batch. Never trims. Returns the entry ids.
    pub async fn enqueue<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        jobs: &[Envelope],
    ) -> Result<Vec<String>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::Pipeline::with_capacity(jobs.len() + 1);
        if let Some(lane) = self.keys.lane.segment() {
            // Workers learn a lane from this set: record it with the jobs.
            pipe.cmd("SADD").arg(&self.keys.lanes).arg(lane).ignore();
        }
        for job in jobs {
            let job = self.in_lane(job);
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&self.keys.stream).arg("*");
            job.write_args(&mut cmd);
            pipe.add_command(cmd);
        }
        pipe.query_async(conn)
            .await
            .map_err(QueueError::redis("enqueue"))
    }

    /// Stores a job to become ready at `when`; returns the due time (unix
    /// ms). `When::In` is measured on the server's clock.
    pub async fn schedule<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        job: &Envelope,
        when: When,
    ) -> Result<u64, QueueError> {
        self.note_lane(conn).await?;
        let (mode, ms) = match when {
            When::In(d) => ("in", duration_ms(d)),
            When::At(t) => ("at", unix_ms(t)),
        };
        let mut inv = scripts::SCHEDULE.prepare_invoke();
        inv.key(&self.keys.jobs)
            .key(&self.keys.delayed)
            .arg(&job.id)
            .arg(mode)
            .arg(ms);
        for (k, v) in self.in_lane(job).fields() {
            inv.arg(k).arg(v);
        }
        let due: i64 = inv
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("schedule"))?;
        match due {
            -1 => Err(QueueError::DuplicateId {
                id: job.id.clone(),
                queue: self.name().to_owned(),
            }),
            d => u64::try_from(d).map_err(|_| protocol("schedule", "negative due time")),
        }
    }

    /// Reads up to `count` entries for `consumer` (never more: callers pass
    /// their free slots), blocking up to `block` for new ones. Cancel-safe
    /// in the sense that entries delivered to an abandoned read stay in this
    /// consumer's pending list and are found by [`Queue::own_entries`] or by
    /// reclaim.
    pub async fn read<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        count: usize,
        block: Duration,
        from: &ReadFrom,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1));
        let ReadFrom::New = from;
        cmd.arg("BLOCK")
            .arg(duration_ms(block))
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(">");
        let reply: Value = cmd
            .query_async(conn)
            .await
            .map_err(QueueError::redis("read"))?;
        parse_read_reply(reply)
    }

    /// Acknowledges and deletes finished entries (XACK + XDEL in one
    /// script), counting them as processed, with no history record, result
    /// nor unique lock to release (the worker uses
    /// [`Queue::ack_finished`]). Returns how many were pending.
    pub async fn ack<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        entry_ids: &[String],
    ) -> Result<u64, QueueError> {
        let done: Vec<Acked> = entry_ids.iter().map(Acked::bare).collect();
        self.ack_finished(conn, "", &done, std::time::Duration::ZERO)
            .await
    }

    /// Moves up to `limit` due jobs from the delayed set to the ready
    /// stream. Safe to run from any number of workers at once. A stored
    /// envelope that cannot be re-added is dead-lettered with the reason.
    pub async fn promote<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        limit: usize,
        retention: DeadRetention,
    ) -> Result<Promoted, QueueError> {
        let (moved, wait, dead): (u64, i64, u64) = scripts::PROMOTE
            .key(&self.keys.delayed)
            .key(&self.keys.jobs)
            .key(&self.keys.stream)
            .key(&self.keys.dead)
            .key(&self.keys.stats)
            .key(&self.keys.unique)
            .key(&self.keys.unique_ttl)
            .arg(limit.max(1))
            .arg(retention.max_len)
            .arg(duration_ms(retention.max_age))
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("promote"))?;
        Ok(Promoted {
            moved,
            dead,
            next_due_in: u64::try_from(wait).ok().map(Duration::from_millis),
        })
    }

    /// Renews the leases of `entry_ids` (resets their idle time) where
    /// `consumer` still owns them; returns the ids whose lease was lost.
    pub async fn renew<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        entry_ids: &[String],
    ) -> Result<Vec<String>, QueueError> {
        Ok(self.renew_leases(conn, consumer, entry_ids).await?.lost)
    }

    /// [`renew`](Self::renew), also telling which of the renewed entries
    /// carry a cancel mark ([`Queue::cancel`]): their attempts are to be
    /// cancelled.
    pub async fn renew_leases<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        entry_ids: &[String],
    ) -> Result<Renewal, QueueError> {
        if entry_ids.is_empty() {
            return Ok(Renewal::default());
        }
        let (lost, cancel) = scripts::RENEW
            .key(&self.keys.stream)
            .key(&self.keys.cancel)
            .arg(&self.group)
            .arg(consumer)
            .arg(entry_ids)
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("renew"))?;
        Ok(Renewal { lost, cancel })
    }

    /// Claims up to `count` entries idle for at least `lease` for
    /// `consumer`; entries already delivered `max_deliveries` times are
    /// dead-lettered instead.
    pub async fn reclaim<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        lease: Duration,
        count: usize,
        max_deliveries: u32,
        retention: DeadRetention,
    ) -> Result<Reclaimed, QueueError> {
        let reply: Value = scripts::RECLAIM
            .key(&self.keys.stream)
            .key(&self.keys.dead)
            .key(&self.keys.stats)
            .key(&self.keys.tries)
            .key(&self.keys.unique)
            .key(&self.keys.unique_ttl)
            .key(&self.keys.history)
            .arg(&self.group)
            .arg(consumer)
            .arg(duration_ms(lease))
            .arg(count.max(1))
            .arg(max_deliveries.max(1))
            .arg(retention.max_len)
            .arg(duration_ms(retention.max_age))
            .arg(self.history.max_len)
            .arg(duration_ms(self.history.max_age))
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("reclaim"))?;
        let Value::Array(mut parts) = reply else {
            return Err(protocol("reclaim", "expected an array"));
        };
        if parts.len() != 2 {
            return Err(protocol("reclaim", "expected two elements"));
        }
        let dead = match parts.pop() {
            Some(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
            _ => return Err(protocol("reclaim", "expected a count")),
        };
        let claimed = match parts.pop() {
            Some(v) => parse_entries(v, "reclaim")?,
            None => Vec::new(),
        };
        Ok(Reclaimed { claimed, dead })
    }

    /// Hands owned entries back to the ready stream at once (attempt
    /// unchanged); returns how many were handed back. An entry with too
    /// many fields to re-add is dead-lettered instead.
    pub async fn release<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        entry_ids: &[String],
        retention: DeadRetention,
    ) -> Result<u64, QueueError> {
        if entry_ids.is_empty() {
            return Ok(0);
        }
        scripts::RELEASE
            .key(&self.keys.stream)
            .key(&self.keys.dead)
            .key(&self.keys.stats)
            .key(&self.keys.tries)
            .key(&self.keys.unique)
            .key(&self.keys.unique_ttl)
            .arg(&self.group)
            .arg(consumer)
            .arg(retention.max_len)
            .arg(duration_ms(retention.max_age))
            .arg(entry_ids)
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("release"))
    }

    /// True when the queue is paused (workers stop claiming).
    pub async fn is_paused<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<bool, QueueError> {
        redis::cmd("EXISTS")
            .arg(&self.keys.paused)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("paused"))
    }

    /// Pauses the queue (workers stop claiming), recording when, on the
    /// server's clock, and why (`reason`, shown by the CLI).
    pub async fn pause<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        reason: Option<&str>,
    ) -> Result<(), QueueError> {
        scripts::PAUSE
            .key(&self.keys.paused)
            .arg(reason.unwrap_or(""))
            .invoke_async::<i64>(conn)
            .await
            .map(drop)
            .map_err(QueueError::redis("pause"))
    }

    /// When and why the queue was paused; `None` when it is not paused.
    pub async fn pause_info<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<Option<PauseInfo>, QueueError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(&self.keys.paused)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("paused"))?;
        Ok(value.map(|v| PauseInfo::parse(&v)))
    }

    /// Pauses (without a reason) or resumes the queue.
    pub async fn set_paused<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        paused: bool,
    ) -> Result<(), QueueError> {
        if paused {
            return self.pause(conn, None).await;
        }
        redis::cmd("DEL")
            .arg(&self.keys.paused)
            .query_async::<()>(conn)
            .await
            .map_err(QueueError::redis("pause"))
    }
}

/// When and why a queue was paused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PauseInfo {
    /// When it was paused (unix ms, server time); `None` when the flag was
    /// set without one (by hand, or by an older CLI).
    pub since_ms: Option<u64>,
    /// Why, as given to `millrace pause --reason`.
    pub reason: Option<String>,
}

impl PauseInfo {
    /// Reads the paused key's value: `{"at":ms,"reason":"..."}`, or
    /// anything else (a flag set by hand) as a pause with no details.
    pub fn parse(value: &str) -> Self {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(value) else {
            return Self::default();
        };
        Self {
            since_ms: v.get("at").and_then(serde_json::Value::as_u64),
            reason: v
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
        }
    }
}

/// When a scheduled job becomes ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// After this delay, on the server's clock.
    In(Duration),
    /// At this time.
    At(SystemTime),
}

/// Milliseconds of a duration, saturating.
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Unix time in ms (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(duration_ms)
        .unwrap_or_default()
}
