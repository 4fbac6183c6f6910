//! Failed attempts: retry, defer or dead-letter, fenced, many per script
//! call (`lua/fail.lua`).
//!
//! A retry whose caller brings the entry's fields (the worker read them) is
//! written from those fields: the script does not read the entry again and
//! does not encode it: it is stored as a JSON array of flat fields (the
//! delayed envelope format), encoded here. A retry the caller runs again
//! itself ([`Failure::Again`], a retry with no backoff) is not copied at
//! all: only its attempt record is written.

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use super::{DeadRetention, Queue, duration_ms};
use crate::envelope::MAX_FIELDS;
use crate::error::QueueError;
use crate::reply::protocol;
use crate::scripts;

/// Most records one `fail.lua` call carries; longer lists are split (each
/// call is atomic on its own). Keeps every `unpack` in the script far below
/// Lua's limit (~8,000 values).
pub const FAIL_BATCH: usize = 256;

/// Fields a retry never carries over from the failed entry: it gets a new
/// `attempt` and `error`, and a deferral's bookkeeping ends with it.
const NOT_CARRIED: [&[u8]; 4] = [b"attempt", b"error", b"deferred_since", b"deferrals"];

/// What to do with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Schedule attempt `next_attempt` after `delay`.
    Retry {
        /// Backoff before the next attempt.
        delay: Duration,
        /// The next attempt's number.
        next_attempt: u32,
    },
    /// Run attempt `next_attempt` at once, in the caller (a retry with no
    /// backoff): the entry stays pending for it, unacknowledged and not
    /// copied; only its attempt record is written (the queue's tries hash,
    /// applied wherever the entry is read again).
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
    /// A retry (or deferral) was due, but the job had been cancelled while
    /// its attempt ran (a cancel mark): it ended as cancelled instead.
    Cancelled,
}

/// What [`Queue::fail_many`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailReport {
    /// One outcome per failed attempt, in the order given.
    pub outcomes: Vec<FailOutcome>,
    /// Entries given with their fields that had been deleted from the
    /// stream while pending (by hand: Millrace never deletes an entry it
    /// has not acknowledged). Their retries were written all the same: the
    /// script does not read such entries, and tells only how many XDEL did
    /// not find. Entries the script reads are reported as
    /// [`FailOutcome::Gone`] instead.
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
    /// The entry's fields as the caller read them. Used by a
    /// [`Failure::Retry`]: the next attempt is built from them (all fields
    /// kept but `attempt`, `error`, `deferred_since` and `deferrals`), so
    /// the script need not read the entry again: it writes them as given
    /// (stream entries never change, so the caller's copy is the entry),
    /// after the same fence and field-count checks. `None`: the script
    /// reads the entry (as it always does to dead-letter or defer).
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// How long the failed attempt ran, for the history record of a
    /// dead-letter; `None` when no handler ran.
    pub took: Option<Duration>,
}

impl FailedEntry {
    /// A failed attempt of `entry_id`, whose fields the script reads.
    pub fn new(entry_id: impl Into<String>, failure: Failure, error: impl Into<String>) -> Self {
        Self {
            entry_id: entry_id.into(),
            failure,
            error: error.into(),
            fields: None,
            took: None,
        }
    }

    /// The same, with the attempt's run time (see [`FailedEntry::took`]).
    #[must_use]
    pub fn with_took(mut self, took: Duration) -> Self {
        self.took = Some(took);
        self
    }

    /// The same, with the entry's fields as read (see [`FailedEntry::fields`]).
    pub fn with_fields(mut self, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        self.fields = Some(fields);
        self
    }

    /// Appends this record to a `fail.lua` call (see the script's header).
    fn write_record(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(&self.entry_id);
        let attempt = match self.failure {
            Failure::Retry { next_attempt, .. } => next_attempt.to_string(),
            _ => String::new(),
        };
        match (self.failure, self.next_fields(attempt.as_bytes())) {
            (Failure::Again { next_attempt }, _) => {
                inv.arg("again").arg(next_attempt).arg(&self.error);
            }
            (Failure::Retry { delay, .. }, Some((id, next))) => {
                inv.arg("later")
                    .arg(duration_ms(delay))
                    .arg(id)
                    .arg(json_array(&next));
            }
            (Failure::Retry { delay, .. }, None) => {
                inv.arg("retry")
                    .arg(duration_ms(delay))
                    .arg(&self.error)
                    .arg(&attempt);
            }
            (Failure::Dead, _) => {
                let took = self
                    .took
                    .map_or_else(String::new, |d| duration_ms(d).to_string());
                inv.arg("dead").arg(&self.error).arg(took);
            }
            (Failure::Defer { delay, window }, _) => {
                inv.arg("defer")
                    .arg(duration_ms(delay))
                    .arg(&self.error)
                    .arg(duration_ms(window));
            }
        }
    }

    /// For a retry with the entry's fields: the job id (the entry id when
    /// the entry has none) and the next attempt's flat field list, whose
    /// `attempt` is `attempt`. `None` when there is nothing to build from,
    /// or when the list would be too long to re-add (the script then reads
    /// the entry and dead-letters it with the reason).
    fn next_fields<'a>(&'a self, attempt: &'a [u8]) -> Option<(&'a [u8], Vec<&'a [u8]>)> {
        if !matches!(self.failure, Failure::Retry { .. }) {
            return None;
        }
        let fields = self.fields.as_ref()?;
        let kept = fields
            .iter()
            .filter(|(k, _)| !NOT_CARRIED.contains(&k.as_slice()));
        if fields.len() > MAX_FIELDS || kept.clone().count() + 2 > MAX_FIELDS {
            return None;
        }
        let id = fields
            .iter()
            .find(|(k, _)| k == b"id")
            .map_or(self.entry_id.as_bytes(), |(_, v)| v.as_slice());
        let mut next = Vec::with_capacity(2 * fields.len() + 4);
        for (k, v) in kept {
            next.push(k.as_slice());
            next.push(v.as_slice());
        }
        next.push(b"attempt");
        next.push(attempt);
        next.push(b"error");
        next.push(self.error.as_bytes());
        Some((id, next))
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

/// A flat field list as a JSON array of strings, byte for byte: `"` and
/// `\` escaped, control bytes as `\u00XX`, every other byte (UTF-8 or not)
/// kept as it is, which is what `cjson.decode` in the scripts reads back.
pub(crate) fn json_array(values: &[&[u8]]) -> Vec<u8> {
    let len: usize = values.iter().map(|v| v.len() + 3).sum();
    let mut out = Vec::with_capacity(len + 2);
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        for &b in *v {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0..=0x1f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                _ => out.push(b),
            }
        }
        out.push(b'"');
    }
    out.push(b']');
    out
}

impl Queue {
    /// Records a failed attempt: schedules the next one, defers it, or
    /// dead-letters the job, with `error`. Fenced: refused when `consumer`
    /// no longer owns the entry. An entry with too many fields to copy is
    /// dead-lettered whatever was asked, with the reason. The script reads
    /// the entry itself; [`Queue::fail_many`] takes many at once and can
    /// be given the fields.
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
    /// write. A [`Failure::Retry`] waits in the delayed set, even with no
    /// backoff (then due at once); a [`Failure::Again`] stays with its
    /// caller. Both count in the `retried` counter.
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
                .key(&self.keys.unique)
                .key(&self.keys.unique_ttl)
                .key(&self.keys.history)
                .key(&self.keys.cancel)
                .arg(&self.group)
                .arg(consumer)
                .arg(retention.max_len)
                .arg(duration_ms(retention.max_age))
                .arg(self.history.max_len)
                .arg(duration_ms(self.history.max_age));
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
                    Value::Int(4) => FailOutcome::Cancelled,
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

    fn raw(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn stream_ids_order_by_number_not_text() {
        assert!(stream_id("9-1") < stream_id("10-0"));
        assert!(stream_id("10-2") < stream_id("10-10"));
        assert!(stream_id("10-10") < stream_id("x"));
    }

    #[test]
    fn json_array_escapes_quotes_backslashes_and_control_bytes_only() {
        let v: [&[u8]; 3] = [b"a\"b\\c", b"\n\x01\x7f", "é/x".as_bytes()];
        let json = json_array(&v);
        assert_eq!(
            json,
            "[\"a\\\"b\\\\c\",\"\\u000a\\u0001\x7f\",\"é/x\"]".as_bytes()
        );
        let back: Vec<String> = serde_json::from_slice(&json).unwrap_or_default();
        assert_eq!(back, ["a\"b\\c", "\n\u{1}\u{7f}", "é/x"]);
        assert_eq!(json_array(&[]), b"[]");
    }

    #[test]
    fn a_retry_keeps_every_field_but_attempt_error_and_deferral() {
        let retry = Failure::Retry {
            delay: Duration::ZERO,
            next_attempt: 3,
        };
        let f = FailedEntry::new("1-1", retry, "boom").with_fields(raw(&[
            ("id", "j"),
            ("attempt", "2"),
            ("extra", "kept"),
            ("error", "old"),
            ("deferrals", "2"),
            ("deferred_since", "5"),
        ]));
        let (id, next) = f.next_fields(b"3").unwrap_or_default();
        assert_eq!(id, b"j");
        let next: Vec<&str> = next
            .iter()
            .map(|v| std::str::from_utf8(v).unwrap_or("?"))
            .collect();
        assert_eq!(
            next,
            ["id", "j", "extra", "kept", "attempt", "3", "error", "boom"]
        );
    }

    #[test]
    fn no_fields_or_too_many_leave_the_copy_to_the_script() {
        let retry = Failure::Retry {
            delay: Duration::ZERO,
            next_attempt: 2,
        };
        assert!(
            FailedEntry::new("1-1", retry, "x")
                .next_fields(b"2")
                .is_none()
        );
        let wide: Vec<(String, String)> = (0..MAX_FIELDS - 1)
            .map(|i| (format!("f{i}"), "v".to_owned()))
            .collect();
        let wide: Vec<(&str, &str)> = wide.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let f = FailedEntry::new("1-1", retry, "x").with_fields(raw(&wide));
        assert!(f.next_fields(b"2").is_none(), "63 + attempt + error > 64");
        let dead = FailedEntry::new("1-1", Failure::Dead, "x").with_fields(raw(&[("id", "j")]));
        assert!(dead.next_fields(b"2").is_none());
    }
}
