//! The history of finished jobs: a capped stream per queue
//! (`millrace:{q}:history`) with one entry per outcome (succeeded, dead,
//! cancelled), written by the script that writes the outcome
//! (`record_history` in `lua/prelude.lua`). Read here, newest first, in
//! bounded pages.

use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::error::QueueError;
use crate::inspect::{PAGE, RawEntry, parse_range};
use crate::queue::Queue;

/// Most history entries a look-up by job id reads (in pages of
/// [`PAGE`]) before it gives up: bounds the cost of [`find_finished`] on a
/// large history.
pub const FIND_SCAN_LIMIT: usize = 20_000;

/// How the history stream is bounded (or off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryRetention {
    /// Keep about this many entries (trimmed approximately: up to about
    /// 100 more); 0 turns the history off. Defaults to 10,000.
    pub max_len: u64,
    /// Drop entries older than this (approximately, once per script call);
    /// zero = no age limit. Defaults to 24 h.
    pub max_age: Duration,
}

impl Default for HistoryRetention {
    fn default() -> Self {
        Self {
            max_len: 10_000,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl HistoryRetention {
    /// A history of about `max_len` entries (0 = off), none older than
    /// `max_age` (zero = no age limit).
    pub fn new(max_len: u64, max_age: Duration) -> Self {
        Self { max_len, max_age }
    }

    /// No history: nothing is written.
    pub fn off() -> Self {
        Self::new(0, Duration::ZERO)
    }

    /// True when finished jobs are recorded.
    pub fn is_on(&self) -> bool {
        self.max_len > 0
    }
}

/// How a job finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Its handler succeeded.
    Succeeded,
    /// It was dead-lettered.
    Dead,
    /// It was cancelled before it finished.
    Cancelled,
}

impl Outcome {
    /// The outcome as written in the history (`succeeded`, `dead`,
    /// `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses [`Outcome::as_str`]'s words.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "succeeded" => Some(Self::Succeeded),
            "dead" => Some(Self::Dead),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// One finished job, as its history entry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finished {
    /// The history entry's id (its first part is the finish time).
    pub entry_id: String,
    /// The job id.
    pub job_id: String,
    /// The job's name (empty when unknown).
    pub name: String,
    /// How it finished; `None` for an outcome this build does not know.
    pub outcome: Option<Outcome>,
    /// The outcome word as written.
    pub outcome_text: String,
    /// When it finished (unix ms, server time).
    pub finished_at_ms: u64,
    /// Attempts it took, when known.
    pub attempts: Option<u32>,
    /// The last attempt's run time in ms, when known.
    pub took_ms: Option<u64>,
    /// The consumer that ran it last (empty when none).
    pub consumer: String,
    /// The error of a dead job (or why it was cancelled).
    pub error: Option<String>,
}

impl Finished {
    /// A history entry as a record; `None` when it has no job id.
    pub fn from_entry(e: &RawEntry) -> Option<Self> {
        let job_id = e.get("id")?.to_owned();
        let outcome_text = e.get("outcome").unwrap_or_default().to_owned();
        Some(Self {
            entry_id: e.id.clone(),
            job_id,
            name: e.get("name").unwrap_or_default().to_owned(),
            outcome: Outcome::parse(&outcome_text),
            outcome_text,
            finished_at_ms: e.added_ms(),
            attempts: e.get("attempts").and_then(|a| a.parse().ok()),
            took_ms: e.get("ms").and_then(|a| a.parse().ok()),
            consumer: e.get("consumer").unwrap_or_default().to_owned(),
            error: e.get("error").map(str::to_owned),
        })
    }
}

/// Reads one page of a stream newest first, before `before` (exclusive;
/// `None` = from the newest).
async fn page_before<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    before: Option<&str>,
    count: usize,
) -> Result<Vec<RawEntry>, QueueError> {
    let end = before.map_or_else(|| "+".to_owned(), |b| format!("({b}"));
    let v: redis::Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg(end)
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("history"))?;
    Ok(parse_range(v))
}

/// The newest finished jobs, up to `limit`, newest first; with `outcome`,
/// only those (reading at most [`FIND_SCAN_LIMIT`] entries to find them).
pub async fn recent<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    limit: usize,
    outcome: Option<Outcome>,
) -> Result<Vec<Finished>, QueueError> {
    let key = &queue.keys().history;
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    let mut read = 0;
    while out.len() < limit && read < FIND_SCAN_LIMIT {
        let want = if outcome.is_some() {
            PAGE
        } else {
            limit - out.len()
        };
        let page = page_before(conn, key, before.as_deref(), want.min(PAGE)).await?;
        read += page.len();
        let done = page.len() < want.min(PAGE);
        before = page.last().map(|e| e.id.clone());
        out.extend(
            page.iter()
                .filter_map(Finished::from_entry)
                .filter(|f| outcome.is_none() || f.outcome == outcome),
        );
        if done || before.is_none() {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// The newest history record of job `job_id`, if it is in the history.
/// A job id that is a UUIDv7 (the producer's default) carries its enqueue
/// time, and a job finishes after it is enqueued: only entries from that
/// time on are read, oldest first. Any other id is looked for newest
/// first. Either way at most [`FIND_SCAN_LIMIT`] entries are read.
pub async fn find_finished<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    job_id: &str,
) -> Result<Option<Finished>, QueueError> {
    let key = &queue.keys().history;
    let Some(since) = uuid_v7_ms(job_id) else {
        let mut before: Option<String> = None;
        let mut read = 0;
        while read < FIND_SCAN_LIMIT {
            let page = page_before(conn, key, before.as_deref(), PAGE).await?;
            read += page.len();
            if let Some(e) = page.iter().find(|e| e.get("id") == Some(job_id)) {
                return Ok(Finished::from_entry(e));
            }
            if page.len() < PAGE {
                break;
            }
            before = page.last().map(|e| e.id.clone());
        }
        return Ok(None);
    };
    // A minute of slack for a producer clock ahead of the server's.
    let mut start = format!("{}-0", since.saturating_sub(60_000));
    let mut found = None;
    let mut read = 0;
    while read < FIND_SCAN_LIMIT {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("history"))?;
        let page = parse_range(v);
        read += page.len();
        // The newest record wins (a job id reused, a job replayed).
        if let Some(e) = page.iter().rev().find(|e| e.get("id") == Some(job_id)) {
            found = Finished::from_entry(e);
        }
        match page.last() {
            Some(last) if page.len() == PAGE => start = format!("({}", last.id),
            _ => break,
        }
    }
    Ok(found)
}

/// The unix ms in a UUIDv7 (its first 48 bits), or `None` for any other
/// text.
pub fn uuid_v7_ms(id: &str) -> Option<u64> {
    let u = uuid::Uuid::parse_str(id).ok()?;
    if u.get_version_num() != 7 {
        return None;
    }
    let b = u.as_bytes();
    Some(
        b[..6]
            .iter()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v7_time_is_read_and_others_are_not() {
        let id = uuid::Uuid::now_v7().to_string();
        let ms = uuid_v7_ms(&id).unwrap();
        let now = crate::queue::unix_ms(std::time::SystemTime::now());
        assert!(ms <= now && now - ms < 10_000, "{ms} vs {now}");
        assert_eq!(uuid_v7_ms("67e55044-10b1-426f-9247-bb680e5fe0c8"), None);
        assert_eq!(uuid_v7_ms("order-42"), None);
    }

    #[test]
    fn outcomes_round_trip() {
        for o in [Outcome::Succeeded, Outcome::Dead, Outcome::Cancelled] {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("x"), None);
    }
}
