//! Parked retries: entries that failed and wait in the stream for their
//! backoff, pending for [`crate::queue::PARKED_CONSUMER`], with their due
//! time in the retrying set and their attempt record in the tries hash.

use redis::Value;
use redis::aio::ConnectionLike;

use super::delayed::DelayedJob;
use super::{RawEntry, parse_range};
use crate::error::QueueError;
use crate::queue::Queue;

/// `fields` with a retried entry's attempt record (`<attempt>:<error>`)
/// applied, as the scripts apply it before a worker sees the entry.
pub(super) fn apply_tries(fields: &mut Vec<(String, String)>, record: &str) {
    let Some((attempt, error)) = record.split_once(':') else {
        return;
    };
    if attempt.is_empty() || !attempt.bytes().all(|b| b.is_ascii_digit()) {
        return;
    }
    fields.retain(|(k, _)| k != "attempt" && k != "error");
    fields.push(("attempt".to_owned(), attempt.to_owned()));
    fields.push(("error".to_owned(), error.to_owned()));
}

/// Applies the attempt records of whichever of `entries` are being
/// retried (one HMGET; nothing when none is).
pub(super) async fn with_tries<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    entries: &mut [RawEntry],
) -> Result<(), QueueError> {
    if entries.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let records: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&queue.keys().tries)
        .arg(&ids)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("tries"))?;
    for (e, r) in entries.iter_mut().zip(records) {
        if let Some(r) = r {
            apply_tries(&mut e.fields, &r);
        }
    }
    Ok(())
}

/// Number of parked retries.
pub(super) async fn parked_total<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<u64, QueueError> {
    redis::cmd("ZCARD")
        .arg(&queue.keys().retrying)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("zcard"))
}

/// One page of parked retries, by due time, starting at index `offset`.
pub(super) async fn parked_page<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    offset: usize,
    count: usize,
) -> Result<Vec<DelayedJob>, QueueError> {
    let k = queue.keys();
    let stop = offset + count.max(1) - 1;
    let ids: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&k.retrying)
        .arg(offset)
        .arg(stop)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .map_err(QueueError::redis("zrange"))?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (id, _) in &ids {
        pipe.cmd("XRANGE").arg(&k.stream).arg(id).arg(id);
    }
    let ranges: Vec<Value> = pipe
        .query_async(conn)
        .await
        .map_err(QueueError::redis("xrange"))?;
    let mut entries: Vec<Option<RawEntry>> =
        ranges.into_iter().map(|r| parse_range(r).pop()).collect();
    let mut found: Vec<RawEntry> = entries.iter_mut().filter_map(Option::take).collect();
    with_tries(conn, queue, &mut found).await?;
    let mut found = found.into_iter().peekable();
    Ok(ids
        .into_iter()
        .map(|(entry, due)| {
            let e = found.next_if(|e| e.id == entry);
            let id = e
                .as_ref()
                .and_then(|e| e.get("id"))
                .map_or_else(|| entry.clone(), str::to_owned);
            DelayedJob::parked(id, entry, due as u64, e.map(|e| e.fields))
        })
        .collect())
}

/// The due time (unix ms) of the parked retry at stream entry `entry`.
pub(super) async fn parked_due<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    entry: &str,
) -> Result<Option<u64>, QueueError> {
    let due: Option<f64> = redis::cmd("ZSCORE")
        .arg(&queue.keys().retrying)
        .arg(entry)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("zscore"))?;
    Ok(due.map(|d| d as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(f: &[(&str, &str)]) -> Vec<(String, String)> {
        f.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_attempt_record_replaces_attempt_and_error() {
        let mut f = pairs(&[("id", "j"), ("attempt", "1"), ("payload", "{}")]);
        apply_tries(&mut f, "3:boom: it broke");
        assert_eq!(
            f,
            pairs(&[
                ("id", "j"),
                ("payload", "{}"),
                ("attempt", "3"),
                ("error", "boom: it broke")
            ])
        );
        let before = f.clone();
        apply_tries(&mut f, "x:nope");
        apply_tries(&mut f, "no colon");
        assert_eq!(f, before, "a malformed record changes nothing");
    }
}
