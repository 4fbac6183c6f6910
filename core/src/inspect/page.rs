//! Pages of a queue for a browser (the web dashboard): ready entries after
//! a cursor, and dead entries newest first with a bounded scan per page, so
//! a page of a queue with a million dead entries costs a few commands.

use redis::aio::ConnectionLike;

use super::dead::DeadFilter;
use super::stats::group_info;
use super::{PAGE, RawEntry, in_lane, range};
use crate::error::QueueError;
use crate::queue::Queue;

/// Orders stream entry ids (`ms-seq`) numerically; a malformed part counts
/// as 0.
pub fn compare_entry_ids(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| {
        let mut it = s.splitn(2, '-');
        let ms = it.next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        let seq = it.next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        (ms, seq)
    };
    split(a).cmp(&split(b))
}

/// Up to `count` ready entries of `queue`'s lane (not yet delivered to any
/// worker), oldest first, after entry `after` when given: two commands.
pub async fn ready_page<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    after: Option<&str>,
    count: usize,
) -> Result<Vec<RawEntry>, QueueError> {
    let delivered = group_info(conn, queue)
        .await?
        .map_or_else(|| "0-0".to_owned(), |g| g.last_delivered);
    let start = match after {
        Some(a) if compare_entry_ids(a, &delivered).is_gt() => a.to_owned(),
        _ => delivered,
    };
    let entries = range(
        conn,
        &queue.keys().stream,
        &format!("({start}"),
        "+",
        count,
        false,
    )
    .await?;
    Ok(in_lane(entries, queue.priority()))
}

/// One page of dead entries, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadPage {
    /// The matching entries, newest first.
    pub entries: Vec<RawEntry>,
    /// Where the next page starts (pass it as `before`); `None` when the
    /// stream holds nothing older that could match.
    pub next: Option<String>,
    /// Entries read to fill this page.
    pub scanned: usize,
}

/// Up to `limit` dead entries matching `filter`, newest first, older than
/// entry `before` when given. Reads at most `max_reads` pages (of `limit`
/// entries without a filter, [`PAGE`] with one), so a filter that matches
/// little costs a bounded number of commands per page: the page may then
/// hold fewer than `limit` entries and still have a `next`.
pub async fn dead_page<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &Queue,
    filter: &DeadFilter,
    before: Option<&str>,
    limit: usize,
    max_reads: usize,
) -> Result<DeadPage, QueueError> {
    let key = &queue.keys().dead;
    let start = filter.start();
    let read = if filter.is_empty() {
        limit.max(1)
    } else {
        PAGE
    };
    let mut end = before.map_or_else(|| "+".to_owned(), |b| format!("({b}"));
    let mut out = DeadPage::default();
    for _ in 0..max_reads.max(1) {
        let page = range(conn, key, &start, &end, read, true).await?;
        out.scanned += page.len();
        let exhausted = page.len() < read;
        let Some(last) = page.last() else {
            out.next = None;
            return Ok(out);
        };
        let read_last = last.id.clone();
        let mut shown_last = None;
        for e in page {
            if out.entries.len() == limit {
                break;
            }
            if filter.keeps(&e) {
                shown_last = Some(e.id.clone());
                out.entries.push(e);
            }
        }
        if out.entries.len() == limit
            && let Some(shown) = shown_last
        {
            // Whatever is older than the last shown entry is the next page.
            let more = range(conn, key, &start, &format!("({shown}"), 1, true).await?;
            out.next = (!more.is_empty()).then_some(shown);
            return Ok(out);
        }
        if exhausted {
            out.next = None;
            return Ok(out);
        }
        end = format!("({read_last}");
        out.next = Some(read_last);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_numerically() {
        assert!(compare_entry_ids("9-0", "10-0").is_lt());
        assert!(compare_entry_ids("10-2", "10-10").is_lt());
        assert!(compare_entry_ids("10-1", "10-1").is_eq());
    }
}
