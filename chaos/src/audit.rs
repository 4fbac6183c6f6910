//! What the queue holds at the end of the run, job by job, over all its
//! lanes: entries of the ready streams (split into pending, ready, and "behind": neither pending
//! nor after the group's last-delivered id, so no read will ever deliver
//! them), delayed jobs, and dead-lettered jobs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::bail;
use millrace_core::Conn;
use millrace_core::Queue;
use millrace_core::redis;

/// Entries read per `XRANGE`.
const PAGE: usize = 1000;

/// The queue's contents by job id.
#[derive(Default)]
pub struct Audit {
    /// Jobs in the stream, not pending, after the group's last-delivered
    /// id: a worker's next read gets them.
    pub ready: HashSet<String>,
    /// Jobs in the stream, not pending, at or before the last-delivered id:
    /// stuck for good (no read delivers them, no reclaim sees them).
    pub behind: HashSet<String>,
    /// Jobs pending in the group (delivered, never acknowledged).
    pub pending: HashSet<String>,
    /// Jobs in the delayed set.
    pub delayed: HashSet<String>,
    /// Dead-lettered jobs.
    pub dead: HashSet<String>,
    /// Dead-letter reasons (field `error`) and how many entries gave each.
    pub dead_errors: HashMap<String, usize>,
    /// Entries in the ready stream.
    pub stream_entries: usize,
    /// Entries in the group's pending list.
    pub pending_entries: usize,
    /// Entries in the dead-letter stream.
    pub dead_entries: usize,
}

impl Audit {
    /// Whether the job is still somewhere in the queue (ready, pending,
    /// delayed), so a worker could still run it.
    pub fn holds(&self, id: &str) -> bool {
        self.ready.contains(id)
            || self.behind.contains(id)
            || self.pending.contains(id)
            || self.delayed.contains(id)
    }
}

/// Reads the whole queue, retrying for a few seconds while Redis restarts
/// or the connection reconnects.
pub async fn audit(conn: &mut Conn, queue: &Queue) -> anyhow::Result<Audit> {
    let mut last = None;
    for _ in 0..50 {
        match read(conn, queue).await {
            Ok(a) => return Ok(a),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("cannot read the queue's contents: {last:?}")
}

async fn read(conn: &mut Conn, queue: &Queue) -> redis::RedisResult<Audit> {
    let mut a = Audit::default();
    let names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&queue.keys().lanes)
        .query_async(conn)
        .await?;
    for lane in millrace_core::lane::lanes_from_names(&names) {
        read_lane(conn, &queue.lane(lane), &mut a).await?;
    }
    for (_, job, error) in scan(conn, &queue.keys().dead).await? {
        a.dead_entries += 1;
        a.dead.extend(job);
        *a.dead_errors.entry(error.unwrap_or_default()).or_default() += 1;
    }
    Ok(a)
}

/// Adds one lane's stream, pending list and delayed set to `a`.
async fn read_lane(conn: &mut Conn, queue: &Queue, a: &mut Audit) -> redis::RedisResult<()> {
    let k = queue.keys();
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&k.stream)
        .query_async(conn)
        .await?;
    let text = |m: &HashMap<String, redis::Value>, key: &str| {
        m.get(key)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
    };
    let last_delivered = groups
        .iter()
        .find(|g| text(g, "name").as_deref() == Some(queue.group()))
        .and_then(|g| text(g, "last-delivered-id"))
        .and_then(|id| entry_id(&id))
        .unwrap_or((0, 0));
    let pel: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(&k.stream)
        .arg(queue.group())
        .arg("-")
        .arg("+")
        .arg(u32::MAX)
        .query_async(conn)
        .await?;
    let pel: HashSet<String> = pel.into_iter().map(|r| r.0).collect();

    a.pending_entries += pel.len();
    for (entry, job, _) in scan(conn, &k.stream).await? {
        a.stream_entries += 1;
        let set = if pel.contains(&entry) {
            &mut a.pending
        } else if entry_id(&entry).is_some_and(|e| e <= last_delivered) {
            &mut a.behind
        } else {
            &mut a.ready
        };
        set.extend(job);
    }
    let delayed: Vec<String> = redis::cmd("ZRANGE")
        .arg(&k.delayed)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    a.delayed.extend(delayed);
    Ok(())
}

/// An entry id with the job id (field `id`) and error (field `error`) of
/// its job.
type Scanned = (String, Option<String>, Option<String>);

/// A look at the pending list while the run goes on.
#[derive(Default, Clone, Copy)]
pub struct PendingSample {
    /// The highest delivery count among the first 1,000 pending entries: a
    /// job that never failed is delivered once, again after its worker was
    /// killed; reclaim dead-letters an expired entry at the workers' max
    /// deliveries (5).
    pub deliveries: u64,
    /// The most entries pending for one consumer. A worker runs at most
    /// `--concurrency` jobs; more pending means entries delivered to it
    /// that it does not know it has.
    pub per_consumer: u64,
}

impl PendingSample {
    /// The larger of each figure.
    pub fn max(self, other: Self) -> Self {
        Self {
            deliveries: self.deliveries.max(other.deliveries),
            per_consumer: self.per_consumer.max(other.per_consumer),
        }
    }
}

/// Samples the pending list (one round trip).
pub async fn sample_pending(conn: &mut Conn, queue: &Queue) -> anyhow::Result<PendingSample> {
    type Summary = (
        u64,
        Option<String>,
        Option<String>,
        Option<Vec<(String, u64)>>,
    );
    let (summary, pel): (Summary, Vec<(String, String, u64, u64)>) = redis::pipe()
        .cmd("XPENDING")
        .arg(&queue.keys().stream)
        .arg(queue.group())
        .cmd("XPENDING")
        .arg(&queue.keys().stream)
        .arg(queue.group())
        .arg("-")
        .arg("+")
        .arg(1000)
        .query_async(conn)
        .await?;
    Ok(PendingSample {
        deliveries: pel.iter().map(|p| p.3).max().unwrap_or(0),
        per_consumer: summary
            .3
            .unwrap_or_default()
            .iter()
            .map(|c| c.1)
            .max()
            .unwrap_or(0),
    })
}

/// Every entry of a stream.
async fn scan(conn: &mut Conn, key: &str) -> redis::RedisResult<Vec<Scanned>> {
    let mut out = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let page: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await?;
        let full = page.len() == PAGE;
        if let Some((last, _)) = page.last() {
            start = format!("({last}");
        }
        out.extend(
            page.into_iter()
                .map(|(e, mut f)| (e, f.remove("id"), f.remove("error"))),
        );
        if !full {
            return Ok(out);
        }
    }
}

/// A stream entry id as (ms, seq), for ordering.
fn entry_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_by_time_then_sequence() {
        assert!(entry_id("10-2") < entry_id("11-0"));
        assert!(entry_id("10-2") < entry_id("10-10"));
        assert_eq!(entry_id("garbage"), None);
    }
}
