//! The outbox table: writing rows inside a caller's transaction, and
//! reading its state for operators. The producer SDK's
//! `millrace::outbox` (feature `postgres`) validates jobs and calls
//! [`insert`]; plain SQL may insert rows too (the table's constraints
//! refuse an invalid queue name, an empty job name or id, absurd attempts
//! or a payload over 16 MiB).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::PgConnection;

/// When an outbox job becomes ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Schedule {
    /// As soon as it is relayed.
    #[default]
    Now,
    /// This long after the row's INSERT (the database's clock).
    In(Duration),
    /// At this time.
    At(SystemTime),
}

/// One job to write to the outbox, already validated by the caller.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewJob {
    /// The queue.
    pub queue: String,
    /// The job id.
    pub job_id: String,
    /// The job's name.
    pub name: String,
    /// The JSON payload.
    pub payload: String,
    /// Attempts allowed (the worker's policy when `None`).
    pub max_attempts: Option<u32>,
    /// The producer's W3C traceparent.
    pub trace: Option<String>,
    /// When it becomes ready.
    pub schedule: Schedule,
}

impl NewJob {
    /// A job `name` with `payload` for `queue`, ready at once.
    pub fn new(queue: String, job_id: String, name: String, payload: String) -> Self {
        Self {
            queue,
            job_id,
            name,
            payload,
            max_attempts: None,
            trace: None,
            schedule: Schedule::Now,
        }
    }
}

/// Inserts `jobs` into the outbox on `conn` (the caller's transaction), in
/// one statement; returns their outbox row ids in order. The rows become
/// visible to the relay when the transaction commits.
pub async fn insert(conn: &mut PgConnection, jobs: &[NewJob]) -> Result<Vec<i64>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let n = jobs.len();
    let mut queue = Vec::with_capacity(n);
    let mut job_id = Vec::with_capacity(n);
    let mut name = Vec::with_capacity(n);
    let mut payload = Vec::with_capacity(n);
    let mut attempts: Vec<Option<i32>> = Vec::with_capacity(n);
    let mut trace: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut delay_ms: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut at_ms: Vec<Option<i64>> = Vec::with_capacity(n);
    for j in jobs {
        queue.push(j.queue.as_str());
        job_id.push(j.job_id.as_str());
        name.push(j.name.as_str());
        payload.push(j.payload.as_str());
        attempts.push(j.max_attempts.map(|m| i32::try_from(m).unwrap_or(i32::MAX)));
        trace.push(j.trace.as_deref());
        let (d, a) = match j.schedule {
            Schedule::Now => (None, None),
            Schedule::In(d) => (Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)), None),
            Schedule::At(t) => (None, Some(unix_ms(t))),
        };
        delay_ms.push(d);
        at_ms.push(a);
    }
    sqlx::query_scalar(
        "INSERT INTO millrace_outbox (queue, job_id, name, payload, max_attempts, trace, run_at)
         SELECT q, j, n, p, m, t,
                CASE WHEN d IS NOT NULL THEN clock_timestamp() + d * interval '1 millisecond'
                     WHEN a IS NOT NULL THEN to_timestamp(a / 1000.0) END
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[],
                     $7::int8[], $8::int8[]) WITH ORDINALITY AS u(q, j, n, p, m, t, d, a, o)
         ORDER BY o
         RETURNING id",
    )
    .bind(queue)
    .bind(job_id)
    .bind(name)
    .bind(payload)
    .bind(attempts)
    .bind(trace)
    .bind(delay_ms)
    .bind(at_ms)
    .fetch_all(conn)
    .await
}

fn unix_ms(t: SystemTime) -> i64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The outbox at a glance, for operators (`millrace outbox status`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// Rows waiting to be relayed (dead rows left out).
    pub waiting: i64,
    /// Of those, rows whose last relay attempt failed (waiting for a retry).
    pub failing: i64,
    /// Rows refused for good.
    pub dead: i64,
    /// Age in seconds of the oldest waiting row (0 when none).
    pub oldest_age_seconds: f64,
}

/// One row that failed to relay or was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProblemRow {
    /// Outbox row id.
    pub id: i64,
    /// Its queue.
    pub queue: String,
    /// Its job id.
    pub job_id: String,
    /// Its job name.
    pub name: String,
    /// Failed relay attempts.
    pub attempts: i32,
    /// The last error.
    pub last_error: Option<String>,
    /// True when refused for good.
    pub dead: bool,
}

/// Counts waiting, failing and dead rows and the oldest waiting row's age.
pub async fn status(conn: &mut PgConnection) -> Result<Status, sqlx::Error> {
    let (waiting, failing, dead, oldest): (i64, i64, i64, f64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE dead_at IS NULL),
                count(*) FILTER (WHERE dead_at IS NULL AND attempts > 0),
                count(*) FILTER (WHERE dead_at IS NOT NULL),
                coalesce(extract(epoch FROM clock_timestamp() - min(created_at) FILTER (WHERE dead_at IS NULL)), 0)::float8
         FROM millrace_outbox",
    )
    .fetch_one(conn)
    .await?;
    Ok(Status {
        waiting,
        failing,
        dead,
        oldest_age_seconds: oldest,
    })
}

/// A problem row as selected: id, queue, job id, name, attempts, error, dead.
type ProblemTuple = (i64, String, String, String, i32, Option<String>, bool);

/// Rows that failed at least once or were refused, oldest first.
pub async fn problems(conn: &mut PgConnection, limit: i64) -> Result<Vec<ProblemRow>, sqlx::Error> {
    let rows: Vec<ProblemTuple> = sqlx::query_as(
        "SELECT id, queue, job_id, name, attempts, last_error, dead_at IS NOT NULL
         FROM millrace_outbox WHERE attempts > 0 OR dead_at IS NOT NULL
         ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, queue, job_id, name, attempts, last_error, dead)| ProblemRow {
                id,
                queue,
                job_id,
                name,
                attempts,
                last_error,
                dead,
            },
        )
        .collect())
}

/// Makes dead rows relayable again (after the cause was fixed); returns how
/// many. `ids` empty: all dead rows.
pub async fn revive(conn: &mut PgConnection, ids: &[i64]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE millrace_outbox SET dead_at = NULL, retry_at = NULL, attempts = 0
         WHERE dead_at IS NOT NULL AND (cardinality($1::int8[]) = 0 OR id = ANY($1))",
    )
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
