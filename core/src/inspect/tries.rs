//! Attempt records of entries retried in place (no backoff): the stream
//! entry keeps its first attempt's fields, and its attempt number and
//! last error live in the queue's tries hash.

use redis::aio::ConnectionLike;

use super::RawEntry;
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
