//! What the benchmark reads from Redis itself: CPU time, memory, command
//! counts, a queue's counters and what a run left behind.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use millrace_core::{Keys, Priority};
use redis::aio::MultiplexedConnection;

/// A plain connection for measurements, apart from the ones under test.
#[derive(Clone)]
pub struct Probe {
    conn: MultiplexedConnection,
}

/// A queue's `stats` hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Jobs acknowledged as done.
    pub processed: u64,
    /// Failed attempts scheduled for a retry.
    pub retried: u64,
    /// Jobs dead-lettered.
    pub dead: u64,
}

/// What a queue holds after a run; all zero when the run cleaned up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Residue {
    /// Entries in the ready streams (every lane's).
    pub stream: u64,
    /// Entries in the group's pending lists.
    pub pending: u64,
    /// Members of the delayed sets.
    pub delayed: u64,
    /// Envelopes in the jobs hash.
    pub jobs: u64,
    /// Entries in the dead-letter stream.
    pub dead: u64,
    /// Attempt records of entries retried in place (the tries hash).
    pub tries: u64,
}

impl Residue {
    /// True when nothing was left behind.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Probe {
    /// Connects to `redis`.
    pub async fn connect(redis: &millrace_core::connect::Endpoint) -> anyhow::Result<Self> {
        let client = redis.client()?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .context("cannot connect to Redis")?;
        Ok(Self { conn })
    }

    /// A clone of the connection, for scripts and setup.
    pub fn conn(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    async fn info(&self, section: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.conn())
            .await?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }

    /// The server's version, e.g. `7.0.15`.
    pub async fn version(&self) -> anyhow::Result<String> {
        Ok(self
            .info("server")
            .await?
            .remove("redis_version")
            .unwrap_or_default())
    }

    /// CPU seconds the server has used (system + user, main thread and
    /// all), from `INFO cpu`.
    pub async fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let info = self.info("cpu").await?;
        let get = |k: &str| {
            info.get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(get("used_cpu_sys") + get("used_cpu_user"))
    }

    /// `used_memory` in bytes.
    pub async fn used_memory(&self) -> anyhow::Result<u64> {
        Ok(self
            .info("memory")
            .await?
            .get("used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Bytes a key takes (`MEMORY USAGE key SAMPLES 0`: every element
    /// counted); 0 when it does not exist.
    pub async fn key_memory(&self, key: &str) -> anyhow::Result<u64> {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut self.conn())
            .await?;
        Ok(bytes.unwrap_or(0))
    }

    /// Calls per command so far (`INFO commandstats`), commands run by
    /// scripts included.
    pub async fn command_calls(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let info = self.info("commandstats").await?;
        Ok(info
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("cmdstat_")?;
                let calls = v.split(',').find_map(|p| p.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect())
    }

    /// Microseconds spent per command so far (`INFO commandstats`):
    /// commands run by scripts are counted both on their own and inside
    /// the `evalsha` that ran them.
    pub async fn command_usec(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let info = self.info("commandstats").await?;
        Ok(info
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("cmdstat_")?;
                let usec = v.split(',').find_map(|p| p.strip_prefix("usec="))?;
                Some((name.to_owned(), usec.parse().ok()?))
            })
            .collect())
    }

    /// A queue's counters.
    pub async fn counters(&self, keys: &Keys) -> anyhow::Result<Counters> {
        let (p, r, d): (Option<u64>, Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(&keys.stats)
            .arg("processed")
            .arg("retried")
            .arg("dead")
            .query_async(&mut self.conn())
            .await?;
        Ok(Counters {
            processed: p.unwrap_or(0),
            retried: r.unwrap_or(0),
            dead: d.unwrap_or(0),
        })
    }

    /// What a queue still holds, over all its lanes.
    pub async fn residue(&self, keys: &Keys, group: &str) -> anyhow::Result<Residue> {
        let mut conn = self.conn();
        let (jobs, dead): (u64, u64) = redis::pipe()
            .cmd("HLEN")
            .arg(&keys.jobs)
            .cmd("XLEN")
            .arg(&keys.dead)
            .query_async(&mut conn)
            .await?;
        let mut r = Residue {
            jobs,
            dead,
            ..Residue::default()
        };
        for lane in Priority::ALL {
            let lk = keys.for_lane(lane);
            let (stream, pending) = self.stream_counts(&lk.stream, group).await?;
            let (delayed, tries): (u64, u64) = redis::pipe()
                .cmd("ZCARD")
                .arg(&lk.delayed)
                .cmd("HLEN")
                .arg(&lk.tries)
                .query_async(&mut conn)
                .await?;
            r.stream += stream;
            r.pending += pending;
            r.delayed += delayed;
            r.tries += tries;
        }
        Ok(r)
    }

    /// A stream's length and its group's pending count (0 and 0 when
    /// either is missing).
    pub async fn stream_counts(&self, stream: &str, group: &str) -> anyhow::Result<(u64, u64)> {
        let mut conn = self.conn();
        let len: u64 = redis::cmd("XLEN")
            .arg(stream)
            .query_async(&mut conn)
            .await?;
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        let pending = match pending {
            redis::Value::Array(parts) => match parts.first() {
                Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        };
        Ok((len, pending))
    }

    /// Waits until `check` holds for the queue's counters, polling every
    /// `every`; returns the time the condition was first seen and the
    /// counters then. Fails after `limit`.
    pub async fn wait_counters(
        &self,
        keys: &Keys,
        every: Duration,
        limit: Duration,
        mut check: impl FnMut(Counters) -> bool,
    ) -> anyhow::Result<(Instant, Counters)> {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.counters(keys).await?;
            if check(c) {
                return Ok((Instant::now(), c));
            }
            if Instant::now() > deadline {
                bail!(
                    "queue {} did not finish within {limit:?}: {c:?}",
                    keys.queue
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Deletes every key of a queue (every lane's) and its registry entry.
    pub async fn drop_queue(&self, keys: &Keys) -> anyhow::Result<()> {
        let mut del = redis::cmd("DEL");
        del.arg(&keys.jobs)
            .arg(&keys.dead)
            .arg(&keys.workers)
            .arg(&keys.paused)
            .arg(&keys.stats)
            .arg(&keys.history)
            .arg(&keys.lanes);
        for lane in Priority::ALL {
            let lk = keys.for_lane(lane);
            del.arg(lk.stream).arg(lk.delayed).arg(lk.tries);
        }
        redis::pipe()
            .add_command(del)
            .ignore()
            .cmd("SREM")
            .arg(&keys.registry)
            .arg(&keys.queue)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// How many consumers have a heartbeat in the queue's workers set.
    pub async fn live_workers(&self, keys: &Keys) -> anyhow::Result<u64> {
        Ok(redis::cmd("ZCARD")
            .arg(&keys.workers)
            .query_async(&mut self.conn())
            .await?)
    }
}

/// Commands per job between two `INFO commandstats` snapshots, largest
/// first, leaving out the probe's own commands.
pub fn commands_per_job(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    jobs: u64,
) -> Vec<(String, f64)> {
    // Only the probe sends these during a measured window.
    const PROBE: &[&str] = &["info", "hmget", "zcard"];
    let mut out: Vec<(String, f64)> = after
        .iter()
        .filter(|(k, _)| !PROBE.contains(&k.as_str()))
        .filter_map(|(k, a)| {
            let d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d as f64 / jobs.max(1) as f64))
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}
