//! The dead-letter stream: filters and bounded scans.

use redis::aio::ConnectionLike;

use super::{PAGE, RawEntry, range};
use crate::error::QueueError;
use crate::queue::Queue;

/// Filters on dead-letter entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadFilter {
    /// Only jobs with this name.
    pub job: Option<String>,
    /// Only entries whose error contains this text (case-insensitive).
    pub error_contains: Option<String>,
    /// Only entries dead-lettered at or after this unix ms.
    pub since_ms: Option<u64>,
}

impl DeadFilter {
    /// A filter on job name, error text and dead-letter time.
    pub fn new(job: Option<String>, error_contains: Option<String>, since_ms: Option<u64>) -> Self {
        Self {
            job,
            error_contains: error_contains.map(|s| s.to_lowercase()),
            since_ms,
        }
    }

    /// True when no filter is set.
    pub fn is_empty(&self) -> bool {
        self.job.is_none() && self.error_contains.is_none() && self.since_ms.is_none()
    }

    /// True when `e` passes every filter.
    pub fn keeps(&self, e: &RawEntry) -> bool {
        if let Some(job) = &self.job
            && e.get("name") != Some(job.as_str())
        {
            return false;
        }
        if let Some(text) = &self.error_contains
            && !e
                .get("error")
                .is_some_and(|err| err.to_lowercase().contains(text.as_str()))
        {
            return false;
        }
        if let Some(since) = self.since_ms {
            let at = e
                .get("dead_at")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| e.added_ms());
            if at < since {
                return false;
            }
        }
        true
    }

    /// The first entry id worth reading: entries are added when they die,
    /// so nothing older than `since` can match.
    pub fn start(&self) -> String {
        match self.since_ms {
            Some(ms) => format!("{ms}-0"),
            None => "-".to_owned(),
        }
    }
}

/// A cursor over the dead-letter stream in id order, one bounded page at a
/// time, keeping only entries that pass a filter. Entries deleted behind
/// the cursor (replayed, purged) never disturb it.
#[derive(Debug, Clone)]
pub struct DeadScan {
    key: String,
    filter: DeadFilter,
    cursor: String,
    end: String,
    done: bool,
}

impl DeadScan {
    /// A scan of `queue`'s dead-letter stream with `filter`.
    pub fn new(queue: &Queue, filter: DeadFilter) -> Self {
        Self {
            key: queue.keys().dead.clone(),
            cursor: filter.start(),
            end: "+".to_owned(),
            filter,
            done: false,
        }
    }

    /// Stops the scan after entry `last` (inclusive): a bulk operation
    /// touches only what it counted and showed, not entries dead-lettered
    /// while it runs.
    pub fn until(mut self, last: &str) -> Self {
        last.clone_into(&mut self.end);
        self
    }

    /// The next page's matching entries (reading at most `page` entries);
    /// `None` when the stream is exhausted.
    pub async fn next_page<C: ConnectionLike + Send>(
        &mut self,
        conn: &mut C,
        page: usize,
    ) -> Result<Option<Vec<RawEntry>>, QueueError> {
        if self.done {
            return Ok(None);
        }
        let entries = range(conn, &self.key, &self.cursor, &self.end, page, false).await?;
        match entries.last() {
            Some(last) => self.cursor = format!("({}", last.id),
            None => {
                self.done = true;
                return Ok(None);
            }
        }
        if entries.len() < page {
            self.done = true;
        }
        Ok(Some(
            entries
                .into_iter()
                .filter(|e| self.filter.keeps(e))
                .collect(),
        ))
    }
}

/// Up to `limit` dead entries matching `filter`, newest first, reading in
/// pages of [`PAGE`].
pub async fn dead_newest<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    filter: &DeadFilter,
    limit: usize,
) -> Result<Vec<RawEntry>, QueueError> {
    let key = &queue.keys().dead;
    let start = filter.start();
    let mut end = "+".to_owned();
    let mut out = Vec::new();
    while out.len() < limit {
        let page = range(conn, key, &start, &end, PAGE, true).await?;
        let Some(last) = page.last() else { break };
        end = format!("({}", last.id);
        let done = page.len() < PAGE;
        out.extend(page.into_iter().filter(|e| filter.keeps(e)));
        if done {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Number of entries in the dead-letter stream.
pub async fn dead_count<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
) -> Result<u64, QueueError> {
    redis::cmd("XLEN")
        .arg(&queue.keys().dead)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("xlen"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_filter_matches_name_error_and_time() {
        let e = RawEntry {
            id: "1000-0".into(),
            fields: vec![
                ("name".into(), "send".into()),
                ("error".into(), "HTTP 500 from upstream".into()),
                ("dead_at".into(), "1000".into()),
            ],
            lane: crate::Priority::Default,
        };
        assert!(DeadFilter::default().keeps(&e));
        assert!(DeadFilter::new(Some("send".into()), Some("http 500".into()), Some(900)).keeps(&e));
        assert!(!DeadFilter::new(Some("other".into()), None, None).keeps(&e));
        assert!(!DeadFilter::new(None, Some("timeout".into()), None).keeps(&e));
        assert!(!DeadFilter::new(None, None, Some(1001)).keeps(&e));
        assert_eq!(DeadFilter::new(None, None, Some(5)).start(), "5-0");
    }
}
