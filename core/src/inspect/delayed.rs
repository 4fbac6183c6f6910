//! Scheduled and retrying jobs.

use redis::aio::ConnectionLike;

use crate::error::QueueError;
use crate::lane::Priority;
use crate::queue::Queue;

/// A delayed job: scheduled for later, or waiting to be retried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DelayedJob {
    /// Job id.
    pub id: String,
    /// When it becomes ready (unix ms).
    pub due_ms: u64,
    /// Its stored fields; `None` when the envelope is missing.
    pub fields: Option<Vec<(String, String)>>,
    /// The lane whose delayed set holds it.
    pub lane: Priority,
}

impl DelayedJob {
    /// The value of field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.as_ref().and_then(|f| {
            f.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
    }

    /// True when it waits for a retry (it has failed before).
    pub fn is_retry(&self) -> bool {
        is_retry_fields(self.fields.as_deref().unwrap_or_default())
    }
}

pub(super) fn is_retry_fields(fields: &[(String, String)]) -> bool {
    fields
        .iter()
        .any(|(k, v)| k == "error" || (k == "attempt" && v.parse::<u32>().is_ok_and(|a| a > 1)))
}

/// A stored envelope (JSON array of flat fields) as pairs.
pub(super) fn parse_stored(json: &str) -> Vec<(String, String)> {
    let flat: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    let as_text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    flat.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (as_text(&c[0]), as_text(&c[1])))
        .collect()
}

/// One page of the delayed jobs of `queue`'s lane (the lane view's delayed
/// set), by due time, starting at index `offset`.
pub async fn delayed_page<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    offset: usize,
    count: usize,
) -> Result<Vec<DelayedJob>, QueueError> {
    let k = queue.keys();
    let stop = offset + count.max(1) - 1;
    let ids: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&k.delayed)
        .arg(offset)
        .arg(stop)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .map_err(QueueError::redis("zrange"))?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let envs: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&k.jobs)
        .arg(ids.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
        .query_async(conn)
        .await
        .map_err(QueueError::redis("hmget"))?;
    Ok(ids
        .into_iter()
        .zip(envs)
        .map(|((id, due), env)| DelayedJob {
            id,
            due_ms: due as u64,
            fields: env.map(|e| parse_stored(&e)),
            lane: queue.priority(),
        })
        .collect())
}

/// Number of jobs in the delayed sets of every lane the queue uses.
pub async fn delayed_count<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<u64, QueueError> {
    let mut pipe = redis::pipe();
    for lane in queue.lanes(conn).await? {
        pipe.cmd("ZCARD").arg(&queue.keys().for_lane(lane).delayed);
    }
    let counts: Vec<u64> = pipe
        .query_async(conn)
        .await
        .map_err(QueueError::redis("zcard"))?;
    Ok(counts.into_iter().sum())
}

/// One delayed job by id, in whichever lane's delayed set holds it (one
/// round trip).
pub async fn delayed_job<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    id: &str,
) -> Result<Option<DelayedJob>, QueueError> {
    let k = queue.keys();
    let mut pipe = redis::pipe();
    pipe.cmd("HGET").arg(&k.jobs).arg(id);
    for lane in Priority::ALL {
        pipe.cmd("ZSCORE").arg(&k.for_lane(lane).delayed).arg(id);
    }
    let (env, high, default, low): (Option<String>, Option<f64>, Option<f64>, Option<f64>) = pipe
        .query_async(conn)
        .await
        .map_err(QueueError::redis("delayed job"))?;
    let found = [high, default, low]
        .into_iter()
        .zip(Priority::ALL)
        .find_map(|(due, lane)| due.map(|d| (d, lane)));
    Ok(found.map(|(due, lane)| DelayedJob {
        id: id.to_owned(),
        due_ms: due as u64,
        fields: env.map(|e| parse_stored(&e)),
        lane,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_envelopes_tell_retries_from_scheduled_jobs() {
        let retry = parse_stored(r#"["id","a","attempt","2","error","boom"]"#);
        assert!(is_retry_fields(&retry));
        let scheduled = parse_stored(r#"["id","a","attempt","1"]"#);
        assert!(!is_retry_fields(&scheduled));
        assert!(parse_stored("not json").is_empty());
    }
}
