//! The Redis side of the Postgres outbox relay (`millrace-postgres`): add
//! a batch of outbox rows to one queue exactly once (`relay.lua`), and
//! forget their marks once the rows are deleted from the outbox.
//!
//! A row's *mark* names the outbox row (`<outbox id>:<job id>`). The script
//! adds a row only when its mark is not yet in the queue's relayed set
//! (`millrace:{q}:relayed`), and records it in the same script, so a relay
//! that dies between this call and its delete in Postgres repeats the call
//! harmlessly.

use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::envelope::Envelope;
use crate::error::QueueError;
use crate::queue::{Queue, duration_ms};
use crate::reply::protocol;
use crate::scripts;

/// One outbox row to relay.
#[derive(Debug, Clone)]
pub struct RelayRow<'a> {
    /// The row's idempotency mark, unique per outbox row.
    pub mark: String,
    /// `None`: ready at once; `Some(ms)`: scheduled for this unix time (ms).
    pub due_ms: Option<u64>,
    /// The job.
    pub envelope: &'a Envelope,
}

/// What the relay script did with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayOutcome {
    /// Added to the ready stream.
    Added,
    /// Stored in the delayed set.
    Scheduled,
    /// Its mark was there: relayed before, nothing written.
    AlreadyRelayed,
    /// Refused: another job with this id waits in the delayed set.
    DuplicateId,
    /// Refused: its fields cannot be written (too many, or no id).
    BadFields,
}

impl RelayOutcome {
    /// True when the job is in Redis (now or before): the row may go.
    pub fn is_delivered(self) -> bool {
        matches!(self, Self::Added | Self::Scheduled | Self::AlreadyRelayed)
    }
}

impl Queue {
    /// Relays `rows` to this queue in one script: each row whose mark is not
    /// in the relayed set is added (or scheduled) and marked; marks older
    /// than `mark_retention` are trimmed. Returns one outcome per row, in
    /// order. Nothing is written when the script refuses the batch (a key of
    /// the wrong type): the error says which.
    pub async fn relay<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        rows: &[RelayRow<'_>],
        mark_retention: Duration,
    ) -> Result<Vec<RelayOutcome>, QueueError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let mut inv = scripts::RELAY.prepare_invoke();
        inv.key(&keys.stream)
            .key(&keys.jobs)
            .key(&keys.delayed)
            .key(&keys.relayed)
            .arg(duration_ms(mark_retention))
            .arg(rows.len());
        for row in rows {
            let fields = row.envelope.fields();
            inv.arg(&row.mark)
                .arg(if row.due_ms.is_some() { "at" } else { "now" })
                .arg(row.due_ms.unwrap_or(0))
                .arg(fields.len() * 2);
            for (k, v) in fields {
                inv.arg(k).arg(v);
            }
        }
        let codes: Vec<i64> = inv
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("relay"))?;
        if codes.len() != rows.len() {
            return Err(protocol(
                "relay",
                &format!("{} codes for {} rows", codes.len(), rows.len()),
            ));
        }
        codes
            .into_iter()
            .map(|c| match c {
                1 => Ok(RelayOutcome::Added),
                2 => Ok(RelayOutcome::Scheduled),
                0 => Ok(RelayOutcome::AlreadyRelayed),
                -1 => Ok(RelayOutcome::DuplicateId),
                -2 => Ok(RelayOutcome::BadFields),
                other => Err(protocol("relay", &format!("unknown code {other}"))),
            })
            .collect()
    }

    /// Lets the marks of rows whose delete from the outbox has committed
    /// go: they are re-scored so that the trim of a later `relay.lua` call
    /// (which drops marks older than `mark_retention`) removes them
    /// `keep_for` from now, or removed at once when `keep_for` is zero.
    /// Keeping them a little longer covers a relay that lost its rows'
    /// locks (its session was ended) while its script was still on its
    /// way to Redis.
    pub async fn forget_relayed<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        marks: &[String],
        keep_for: Duration,
        mark_retention: Duration,
    ) -> Result<(), QueueError> {
        if marks.is_empty() {
            return Ok(());
        }
        let cmd = if keep_for.is_zero() {
            let mut c = redis::cmd("ZREM");
            c.arg(&self.keys().relayed).arg(marks);
            c
        } else {
            let now = crate::queue::unix_ms(std::time::SystemTime::now());
            let score = (now + duration_ms(keep_for)).saturating_sub(duration_ms(mark_retention));
            let mut c = redis::cmd("ZADD");
            c.arg(&self.keys().relayed).arg("XX");
            for m in marks {
                c.arg(score).arg(m);
            }
            c
        };
        cmd.query_async::<()>(conn)
            .await
            .map_err(QueueError::redis("forget_relayed"))
    }

    /// Marks in the relayed set now (for tests and `millrace outbox status`).
    pub async fn relayed_marks<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<u64, QueueError> {
        redis::cmd("ZCARD")
            .arg(&self.keys().relayed)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("relayed_marks"))
    }
}
