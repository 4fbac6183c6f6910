//! The producer: our own job ids, so a batch retried after a Redis error
//! can only duplicate a job, never lose or invent one. It enqueues either
//! everything at once, or at a steady rate for the whole fault phase (so
//! enqueues land while workers shut down, reconnect or die).

use std::time::{Duration, Instant};

use anyhow::bail;
use millrace_core::Conn;
use millrace_core::connect::Durability;
use millrace_core::{Envelope, Priority, Queue};

/// Largest batch in one enqueue call.
const BATCH: usize = 500;
/// How often the steady producer enqueues what is due.
const TICK: Duration = Duration::from_millis(5);

/// What the producer did.
pub struct Produced {
    /// Per job, in enqueue order: when its successful enqueue call started.
    pub enqueued_at: Vec<Instant>,
    /// Jobs in batches that were sent again after an error: Redis may have
    /// written the first try too (its reply was lost), so each may run
    /// twice.
    pub resent: usize,
}

/// Enqueues every job of `ids`: all at once when `rate` is 0, else `rate`
/// jobs a second in a batch every 5 ms (catching up after a stall, e.g. a
/// Redis restart), each batch in the next priority lane with `lanes`. Each
/// batch is retried until Redis takes it.
pub async fn produce(
    mut conn: Conn,
    queue: Queue,
    ids: Vec<String>,
    job_ms: u64,
    rate: u64,
    durability: Option<Durability>,
    lanes: bool,
) -> anyhow::Result<Produced> {
    let payload = serde_json::to_string(&millrace_jobs::Sleep { ms: job_ms })?;
    let started = Instant::now();
    let mut times = Vec::with_capacity(ids.len());
    let mut resent = 0;
    let mut batches = 0usize;
    while times.len() < ids.len() {
        let due = if rate == 0 {
            ids.len()
        } else {
            let d = started.elapsed().as_secs_f64() * rate as f64;
            (d as usize).clamp(1, ids.len())
        };
        while times.len() < due {
            let end = due.min(times.len() + BATCH);
            let batch = &ids[times.len()..end];
            // With lanes, batch by batch: high, default, low, high, ...
            let lane = if lanes {
                queue.lane(Priority::ALL[batches % Priority::ALL.len()])
            } else {
                queue.clone()
            };
            batches += 1;
            let (at, retried) =
                enqueue_batch(&mut conn, &lane, batch, &payload, durability).await?;
            if retried {
                resent += end - times.len();
            }
            times.resize(end, at);
        }
        if times.len() < ids.len() {
            tokio::time::sleep(TICK).await;
        }
    }
    Ok(Produced {
        enqueued_at: times,
        resent,
    })
}

/// Enqueues one batch, retrying for up to 30 s; returns when the call that
/// succeeded started, and whether it was a retry.
async fn enqueue_batch(
    conn: &mut Conn,
    queue: &Queue,
    ids: &[String],
    payload: &str,
    durability: Option<Durability>,
) -> anyhow::Result<(Instant, bool)> {
    let envs: Vec<Envelope> = ids
        .iter()
        .map(|id| {
            let mut e = Envelope::new(id.clone(), "sleep", payload.to_owned());
            e.max_attempts = Some(5);
            e.priority = queue.priority();
            e.enqueued_at = Some(millrace_core::queue::unix_ms(std::time::SystemTime::now()));
            e
        })
        .collect();
    let mut tries = 0;
    loop {
        let at = Instant::now();
        let sent = match queue.enqueue(conn, &envs).await {
            Ok(_) => confirmed(conn, queue, durability).await,
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(()) => return Ok((at, tries > 0)),
            Err(e) => {
                tries += 1;
                if tries > 300 {
                    bail!("enqueue kept failing: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// With durability on, whether enough replicas confirmed every write so
/// far (an unconfirmed batch is sent again: it may run twice, never be
/// lost).
async fn confirmed(conn: &mut Conn, queue: &Queue, d: Option<Durability>) -> Result<(), String> {
    let Some(d) = d else { return Ok(()) };
    match conn.wait_replicas(&queue.keys().stream, d).await {
        Ok(n) if n >= d.replicas => Ok(()),
        Ok(n) => Err(format!("only {n} of {} replicas confirmed", d.replicas)),
        Err(e) => Err(e.to_string()),
    }
}
