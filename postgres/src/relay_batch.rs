//! One relay batch: lock committed rows, add them to their queues exactly
//! once, delete them, commit, forget their marks.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures_util::future::join_all;
use millrace_core::Conn;
use millrace_core::outbox::{RelayOutcome, RelayRow};
use millrace_core::{Envelope, Queue, QueueError};
use sqlx::PgPool;
use tracing::{debug, warn};

use crate::metrics as m;
use crate::relay::{Failpoint, RelayError};

/// Largest size of one script call's rows (payloads and fields), so a batch
/// of large payloads is split: 8 MiB.
const MAX_CALL_BYTES: usize = 8 << 20;

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchStats {
    /// Rows locked and looked at.
    pub fetched: usize,
    /// Rows delivered to their queue (and deleted from the outbox).
    pub relayed: usize,
    /// Rows whose queue failed: kept, retried after a backoff.
    pub failed: usize,
    /// Rows refused for good: kept as dead.
    pub dead: usize,
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    Option<i32>,
    Option<String>,
    Option<i64>,
    i64,
    f64,
);

struct Item {
    id: i64,
    envelope: Envelope,
    due_ms: Option<u64>,
    mark: String,
    age: f64,
}

/// Settings a batch needs.
pub(crate) struct BatchParams<'a> {
    pub prefix: &'a str,
    pub batch: usize,
    pub mark_retention: Duration,
    pub mark_grace: Duration,
    pub failpoint: Option<&'a Failpoint>,
}

/// Relays one batch. `Err` means nothing was committed in Postgres (the
/// rows stay; marks already written make the retry a no-op).
pub(crate) async fn relay_batch(
    pool: &PgPool,
    redis: &Conn,
    p: &BatchParams<'_>,
    batches_done: u64,
    registered: &mut HashSet<String>,
) -> Result<BatchStats, RelayError> {
    let mut tx = pool.begin().await.map_err(RelayError::postgres)?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, queue, job_id, name, payload, max_attempts, trace,
                CASE WHEN run_at > clock_timestamp()
                     THEN (extract(epoch FROM run_at) * 1000)::int8 END,
                (extract(epoch FROM created_at) * 1000)::int8,
                extract(epoch FROM clock_timestamp() - created_at)::float8
         FROM millrace_outbox
         WHERE dead_at IS NULL AND (retry_at IS NULL OR retry_at <= clock_timestamp())
         ORDER BY id
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(i64::try_from(p.batch).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await
    .map_err(RelayError::postgres)?;
    let mut stats = BatchStats {
        fetched: rows.len(),
        ..BatchStats::default()
    };
    if rows.is_empty() {
        tx.commit().await.map_err(RelayError::postgres)?;
        return Ok(stats);
    }

    // Group by queue, keeping outbox id order within each queue; refuse
    // rows that cannot become a job.
    let mut dead: Vec<(i64, String)> = Vec::new();
    let mut by_queue: BTreeMap<String, (Queue, Vec<Item>)> = BTreeMap::new();
    for (id, queue, job_id, name, payload, max_attempts, trace, due_ms, created_ms, age) in rows {
        let q = match by_queue.get_mut(&queue) {
            Some(q) => q,
            None => match Queue::with_prefix(p.prefix, &queue) {
                Ok(q) => by_queue.entry(queue.clone()).or_insert((q, Vec::new())),
                Err(e) => {
                    dead.push((id, e.to_string()));
                    continue;
                }
            },
        };
        let mark = format!("{id}:{job_id}");
        let mut envelope = Envelope::new(job_id, name, payload);
        envelope.max_attempts = max_attempts.and_then(|a| u32::try_from(a).ok());
        envelope.enqueued_at = u64::try_from(created_ms).ok();
        envelope.trace = trace;
        q.1.push(Item {
            id,
            envelope,
            due_ms: due_ms.and_then(|d| u64::try_from(d).ok()),
            mark,
            age,
        });
    }

    // New queues join the registry first (as the client does), so the CLI
    // and the samplers know them.
    for (name, (queue, _)) in &by_queue {
        if !registered.contains(name) {
            let mut conn = redis.clone();
            match queue.register(&mut conn).await {
                Ok(()) => {
                    registered.insert(name.clone());
                }
                Err(e) if e.is_connection() => return Err(RelayError::Redis(e)),
                Err(e) => {
                    debug!(queue = %name, error = %e, "outbox relay: cannot register the queue")
                }
            }
        }
    }

    // One script call per queue (split by size), all at once on the
    // multiplexed connection.
    let mut calls = Vec::new();
    for (name, (queue, items)) in &by_queue {
        let mut start = 0;
        while start < items.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < items.len() && (end == start || bytes < MAX_CALL_BYTES) {
                bytes += items[end].envelope.payload.len() + 256;
                end += 1;
            }
            calls.push((name.as_str(), queue, &items[start..end]));
            start = end;
        }
    }
    let results = join_all(calls.iter().map(|(_, queue, items)| {
        let mut conn = redis.clone();
        let rows: Vec<RelayRow<'_>> = items
            .iter()
            .map(|i| RelayRow {
                mark: i.mark.clone(),
                due_ms: i.due_ms,
                envelope: &i.envelope,
            })
            .collect();
        async move { queue.relay(&mut conn, &rows, p.mark_retention).await }
    }))
    .await;

    let mut delivered: Vec<i64> = Vec::new();
    let mut delivered_marks: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut failed: Vec<(i64, String)> = Vec::new();
    let mut lags: Vec<f64> = Vec::new();
    let mut relayed_per_queue: BTreeMap<&str, u64> = BTreeMap::new();
    for ((name, queue, items), result) in calls.iter().zip(results) {
        match result {
            Ok(outcomes) => {
                for (item, outcome) in items.iter().zip(outcomes) {
                    if outcome.is_delivered() {
                        delivered.push(item.id);
                        delivered_marks
                            .entry(name)
                            .or_default()
                            .push(item.mark.clone());
                        lags.push(item.age);
                        *relayed_per_queue.entry(name).or_default() += 1;
                    } else {
                        dead.push((item.id, refusal(outcome, &item.envelope.id, queue)));
                    }
                }
            }
            Err(e) if e.is_connection() => {
                // Redis itself is unreachable: nothing to blame on the rows.
                return Err(RelayError::Redis(e));
            }
            Err(e) => {
                let msg = one_line(&e);
                warn!(queue = %name, rows = items.len(), error = %msg, "outbox relay: queue failed; its rows are retried with backoff, the others go on");
                failed.extend(items.iter().map(|i| (i.id, msg.clone())));
            }
        }
    }

    if let Some(fp) = p.failpoint {
        fp.hit(batches_done).await?;
    }

    if !delivered.is_empty() {
        sqlx::query("DELETE FROM millrace_outbox WHERE id = ANY($1)")
            .bind(&delivered)
            .execute(&mut *tx)
            .await
            .map_err(RelayError::postgres)?;
    }
    if !failed.is_empty() {
        let (ids, errors): (Vec<i64>, Vec<String>) = failed.iter().cloned().unzip();
        sqlx::query(
            "UPDATE millrace_outbox o SET attempts = o.attempts + 1, last_error = u.e,
                 retry_at = clock_timestamp()
                     + least(interval '1 second' * power(2, least(o.attempts, 12)), interval '5 minutes')
             FROM UNNEST($1::int8[], $2::text[]) AS u(id, e) WHERE o.id = u.id",
        )
        .bind(ids)
        .bind(errors)
        .execute(&mut *tx)
        .await
        .map_err(RelayError::postgres)?;
    }
    if !dead.is_empty() {
        let (ids, errors): (Vec<i64>, Vec<String>) = dead.iter().cloned().unzip();
        sqlx::query(
            "UPDATE millrace_outbox o SET dead_at = clock_timestamp(), last_error = u.e
             FROM UNNEST($1::int8[], $2::text[]) AS u(id, e) WHERE o.id = u.id",
        )
        .bind(ids)
        .bind(errors)
        .execute(&mut *tx)
        .await
        .map_err(RelayError::postgres)?;
        for (id, why) in &dead {
            warn!(outbox_id = id, error = %why, "outbox relay: row refused for good (kept as dead; see `millrace outbox status`)");
        }
    }
    tx.commit().await.map_err(RelayError::postgres)?;

    // The rows are gone for good: their marks go after the grace (a relay
    // that lost these rows' locks may still have a script on its way). A
    // failure here only leaves marks for the retention to trim.
    for (name, marks) in delivered_marks {
        if let Some((queue, _)) = by_queue.get(name) {
            let mut conn = redis.clone();
            if let Err(e) = queue
                .forget_relayed(&mut conn, &marks, p.mark_grace, p.mark_retention)
                .await
            {
                debug!(queue = %name, error = %e, "outbox relay: marks not forgotten (trimmed by retention)");
            }
        }
    }

    stats.relayed = delivered.len();
    stats.failed = failed.len();
    stats.dead = dead.len();
    for (queue, n) in relayed_per_queue {
        metrics::counter!(m::OUTBOX_RELAYED, "queue" => queue.to_owned()).increment(n);
    }
    let lag = metrics::histogram!(m::OUTBOX_RELAY_LAG);
    for l in lags {
        lag.record(l);
    }
    if stats.failed > 0 {
        metrics::counter!(m::OUTBOX_RELAY_ERRORS, "kind" => "row").increment(stats.failed as u64);
    }
    if stats.dead > 0 {
        metrics::counter!(m::OUTBOX_RELAY_ERRORS, "kind" => "dead").increment(stats.dead as u64);
    }
    Ok(stats)
}

fn refusal(outcome: RelayOutcome, job_id: &str, queue: &Queue) -> String {
    match outcome {
        RelayOutcome::DuplicateId => format!(
            "job id {job_id:?} is already scheduled or retrying in queue {:?}: a live job is never overwritten",
            queue.name()
        ),
        _ => "the job's fields cannot be written to Redis".to_owned(),
    }
}

fn one_line(e: &QueueError) -> String {
    e.to_string().replace('\n', " ")
}
