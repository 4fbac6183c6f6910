//! Failed attempts: retry, defer or dead-letter, fenced, many per script
//! call (`lua/fail.lua`).
//!
//! A retried entry is never copied: it stays in the stream and its attempt
//! number and error go to the queue's tries hash. With no backoff the
//! worker runs it again at once ([`Failure::Again`]: the entry stays
//! pending for it); with a backoff it is parked ([`Failure::Retry`]:
//! pending for [`super::PARKED_CONSUMER`], due in the retrying set) until a
//! worker claims it back ([`Queue::due_retries`]).

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use super::{DeadRetention, Queue, duration_ms};
use crate::error::QueueError;
use crate::reply::protocol;
use crate::scripts;

/// Most records one `fail.lua` call carries; longer lists are split (each
/// call is atomic on its own). Keeps every `unpack` in the script far below
/// Lua's limit (~8,000 values).
pub const FAIL_BATCH: usize = 256;

/// What to do with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Park the entry until `delay` has passed (server time), then any
    /// worker runs attempt `next_attempt`.
    Retry {
        /// Backoff before the next attempt.
        delay: Duration,
        /// The next attempt's number.
        next_attempt: u32,
    },
    /// Record attempt `next_attempt` and keep the entry pending for the
    /// caller, which runs it again at once (a retry with no backoff).
    Again {
        /// The next attempt's number.
        next_attempt: u32,
    },
    /// Move the job to the dead-letter stream.
    Dead,
    /// No handler here can run it yet (an unknown job name, a newer wire
    /// version: producers deployed ahead of workers). Schedule it again
    /// after a backoff (`delay`, doubled at each deferral up to 64 times),
    /// with its attempt unchanged (no handler ran), until it has been deferred for `window`
    /// (on server time, from its first deferral); then dead-letter it.
    Defer {
        /// Wait before it is offered again the first time.
        delay: Duration,
        /// How long deferrals may go on before it is dead-lettered.
        window: Duration,
    },
}

/// What a failure write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// The next attempt (or a deferral) was scheduled.
    Retried,
    /// The entry was dead-lettered (asked for, out of deferral window, or
    /// too many fields to retry).
    Dead,
    /// The entry was deleted while pending: acknowledged, nothing to keep.
    Gone,
    /// Refused: this consumer no longer owns the entry (its lease was lost).
    LeaseLost,
}

/// What [`Queue::fail_many`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailReport {
    /// One outcome per failed attempt, in the order given.
    pub outcomes: Vec<FailOutcome>,
    /// Entries to park that had been deleted from the stream while
    /// pending (by hand: Millrace never deletes an entry it has not
    /// acknowledged); they are also reported as [`FailOutcome::Gone`].
    pub vanished: u64,
}

/// One failed attempt for [`Queue::fail_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailedEntry {
    /// The pending entry.
    pub entry_id: String,
    /// What to do with it.
    pub failure: Failure,
    /// The attempt's error.
    pub error: String,
}

impl FailedEntry {
    /// A failed attempt of `entry_id`.
    pub fn new(entry_id: impl Into<String>, failure: Failure, error: impl Into<String>) -> Self {
        Self {
            entry_id: entry_id.into(),
            failure,
            error: error.into(),
        }
    }

    /// Appends this record to a `fail.lua` call (see the script's header).
    fn write_record(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(&self.entry_id);
        match self.failure {
            Failure::Retry {
                delay,
                next_attempt,
            } => {
                inv.arg("park")
                    .arg(duration_ms(delay))
                    .arg(next_attempt)
                    .arg(&self.error);
            }
            Failure::Again { next_attempt } => {
                inv.arg("again").arg(next_attempt).arg(&self.error);
            }
            Failure::Dead => {
                inv.arg("dead").arg(&self.error);
            }
            Failure::Defer { delay, window } => {
                inv.arg("defer")
                    .arg(duration_ms(delay))
                    .arg(&self.error)
                    .arg(duration_ms(window));
            }
        }
    }
}

/// A stream entry id (`ms-seq`) as numbers, for ordering; ids that do not
/// parse sort last.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    match (ms.parse(), seq.parse()) {
        (Ok(ms), Ok(seq)) => (ms, seq),
        _ => (u64::MAX, u64::MAX),
    }
}

impl Queue {
    /// Records a failed attempt: schedules the next one, defers it, or
    /// dead-letters the job, with `error`. Fenced: refused when `consumer`
    /// no longer owns the entry. An entry with too many fields to copy is
    /// dead-lettered instead of deferred, with the reason.
    /// [`Queue::fail_many`] takes many at once.
    pub async fn fail<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        entry_id: &str,
        failure: Failure,
        error: &str,
        retention: DeadRetention,
    ) -> Result<FailOutcome, QueueError> {
        let one = [FailedEntry::new(entry_id, failure, error)];
        let mut done = self.fail_many(conn, consumer, &one, retention).await?;
        done.outcomes
            .pop()
            .ok_or_else(|| protocol("fail", "no outcome"))
    }

    /// Records many failed attempts, in one script call per
    /// [`FAIL_BATCH`] records, and returns one outcome per record, in
    /// order (see [`FailReport`]). Each record is fenced on its own (a lost lease refuses that
    /// record only), and each call checks all its records before its first
    /// write. Retries (parked or again) count in the `retried` counter.
    pub async fn fail_many<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        failed: &[FailedEntry],
        retention: DeadRetention,
    ) -> Result<FailReport, QueueError> {
        // In entry id order, so that the script fences a call's records
        // with one XPENDING over their range; outcomes go back in the
        // caller's order.
        let mut order: Vec<usize> = (0..failed.len()).collect();
        order.sort_by_key(|&i| stream_id(&failed[i].entry_id));
        let mut out = vec![FailOutcome::LeaseLost; failed.len()];
        let mut vanished = 0;
        for chunk in order.chunks(FAIL_BATCH) {
            let mut inv = scripts::FAIL.prepare_invoke();
            inv.key(&self.keys.stream)
                .key(&self.keys.jobs)
                .key(&self.keys.delayed)
                .key(&self.keys.dead)
                .key(&self.keys.stats)
                .key(&self.keys.tries)
                .key(&self.keys.retrying)
                .arg(&self.group)
                .arg(consumer)
                .arg(retention.max_len)
                .arg(duration_ms(retention.max_age));
            for &i in chunk {
                failed[i].write_record(&mut inv);
            }
            let reply: Value = inv
                .invoke_async(conn)
                .await
                .map_err(QueueError::redis("fail"))?;
            let Value::Array(mut codes) = reply else {
                return Err(protocol("fail", "expected an array"));
            };
            match codes.pop() {
                Some(Value::Int(n)) => vanished += u64::try_from(n).unwrap_or(0),
                _ => return Err(protocol("fail", "expected a count last")),
            }
            if codes.len() != chunk.len() {
                return Err(protocol("fail", "one outcome per record expected"));
            }
            for (&i, c) in chunk.iter().zip(codes) {
                out[i] = match c {
                    Value::Int(1) => FailOutcome::Retried,
                    Value::Int(2) => FailOutcome::Dead,
                    Value::Int(3) => FailOutcome::Gone,
                    Value::Int(0) => FailOutcome::LeaseLost,
                    _ => return Err(protocol("fail", "unexpected outcome")),
                };
            }
        }
        Ok(FailReport {
            outcomes: out,
            vanished,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_by_number_not_text() {
        assert!(stream_id("9-1") < stream_id("10-0"));
        assert!(stream_id("10-2") < stream_id("10-10"));
        assert!(stream_id("10-10") < stream_id("x"));
    }
}
