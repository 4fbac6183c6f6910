//! A queue's page: its counts and pause switch, then one tab at a time —
//! ready (peek), pending (requeue), delayed (run now) and dead (filters,
//! replay, purge). Each tab is one bounded page, moved by a cursor in the
//! link (a stream id, or a rank in the delayed set).

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use millrace_core::QueueError;
use millrace_core::inspect::{self, DeadFilter, PendingFilter, QueueStats};
use serde::Deserialize;

use crate::app::App;
use crate::error::{PageError, PageResult};
use crate::fmt;
use crate::lanes::{lane_pair, parse_lane, picker};
use crate::layout::{self, queue_url};

/// Rows per page.
pub(crate) const ROWS: usize = 50;
/// XREVRANGE pages a filtered dead page may read (of 500 entries each).
pub(crate) const DEAD_READS: usize = 10;

/// Cursor and flash of a tab.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TabQuery {
    /// Ready and pending: the last id shown before.
    after: Option<String>,
    /// Delayed: the rank to start at.
    offset: Option<usize>,
    flash: Option<String>,
    /// Ready, pending, delayed: the lane listed (`high`, `default`, `low`;
    /// default when absent).
    lane: Option<String>,
}

/// The dead tab's filters and cursor.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub(crate) struct DeadQuery {
    /// Only jobs with this name.
    pub(crate) job: String,
    /// Only errors containing this text.
    pub(crate) error: String,
    /// Dead since: a duration ("1h") or a time ("2026-11-21T09:00:00Z").
    pub(crate) since: String,
    /// The last entry shown before.
    pub(crate) before: Option<String>,
    /// A message after an action.
    pub(crate) flash: Option<String>,
}

impl DeadQuery {
    /// The core filter; `since` is read against the server's `now`.
    pub(crate) fn filter(&self, now_ms: u64) -> PageResult<DeadFilter> {
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let since = match opt(&self.since) {
            None => None,
            Some(s) => Some(since_ms(&s, now_ms)?),
        };
        Ok(DeadFilter::new(opt(&self.job), opt(&self.error), since))
    }

    /// The filters as query pairs.
    pub(crate) fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            ("job", &self.job),
            ("error", &self.error),
            ("since", &self.since),
        ]
    }
}

/// "1h" (ago, on the server's clock) or an RFC 3339 time, as unix ms.
fn since_ms(s: &str, now_ms: u64) -> PageResult<u64> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms.saturating_sub(millrace_core::queue::duration_ms(d)));
    }
    humantime::parse_rfc3339_weak(s)
        .map(millrace_core::queue::unix_ms)
        .map_err(|_| {
            PageError::BadRequest(format!(
                "since {s:?}: use a duration (e.g. 1h) or a time (e.g. 2026-11-21T09:00:00Z)"
            ))
        })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Ready,
    Pending,
    Delayed,
    Dead,
}

/// The header every tab shares: counts, pause switch, tabs, job search.
async fn shell(
    app: &App,
    name: &str,
    tab: Tab,
    flash: Option<&str>,
    body: Markup,
) -> PageResult<Markup> {
    let queue = app.queue(name).await?;
    let mut conn = app.conn();
    let s = inspect::stats(&mut conn, &queue).await?;
    let now = inspect::server_now_ms(&mut conn).await?;
    let mut parts = Vec::new();
    for label in queue.partitions_in_use(&mut conn).await? {
        let p = queue.partition(label).map_err(QueueError::from)?;
        parts.push(inspect::stats(&mut conn, &p).await?);
    }
    let tabs = [
        (Tab::Ready, "", format!("Ready ({})", s.ready)),
        (
            Tab::Pending,
            "pending",
            format!("Pending ({})", s.in_flight),
        ),
        (
            Tab::Delayed,
            "delayed",
            format!("Delayed ({})", s.scheduled + s.retrying.unwrap_or(0)),
        ),
        (Tab::Dead, "dead", format!("Dead ({})", s.dead)),
    ];
    Ok(layout::page(
        app,
        name,
        flash,
        html! {
            p.crumbs { a href="/" { "Queues" } " / " (name) }
            h1 { "Queue " code { (name) } }
            div data-poll=(queue_url(name, "counts")) { (counts(&s, now)) }
            (partitions(&parts))
            (pause_form(app, name, &s))
            nav.tabs {
                @for (t, rest, label) in &tabs {
                    a.active[*t == tab] href=(queue_url(name, rest)) { (label) }
                }
                a href=(queue_url(name, "consumers")) { "Consumers (" (s.consumers) ")" }
                form.find method="get" action=(queue_url(name, "find")) {
                    input type="search" name="id" placeholder="job id or entry id" required;
                    button type="submit" { "Find" }
                }
            }
            (body)
        },
    ))
}

/// `GET /queues/{q}/counts`: the counts alone, polled by the page.
pub(crate) async fn counts_fragment(
    State(app): State<App>,
    Path(name): Path<String>,
) -> PageResult<Markup> {
    let queue = app.queue(&name).await?;
    let mut conn = app.conn();
    let s = inspect::stats(&mut conn, &queue).await?;
    let now = inspect::server_now_ms(&mut conn).await?;
    Ok(counts(&s, now))
}

fn counts(s: &QueueStats, now: u64) -> Markup {
    let ready_of =
        |l: millrace_core::Priority| queue_url(&s.name, "") + &layout::query(&[lane_pair(l)]);
    let cells = [
        ("ready", "Ready", s.ready.to_string()),
        ("in_flight", "In flight", s.in_flight.to_string()),
        ("scheduled", "Scheduled", s.scheduled.to_string()),
        (
            "retrying",
            "Retrying",
            s.retrying.map_or_else(|| "?".into(), |n| n.to_string()),
        ),
        ("dead", "Dead", s.dead.to_string()),
        ("consumers", "Consumers", s.consumers.to_string()),
        ("lag", "Lag", fmt::opt_age(s.lag_ms)),
        ("oldest", "Oldest", fmt::opt_age(s.oldest_ms)),
        ("paused", "Paused", crate::overview::paused(s, now)),
        ("processed", "Processed", s.processed.to_string()),
        (
            "failed",
            "Failed",
            (s.retried + s.dead_lettered).to_string(),
        ),
    ];
    html! {
        dl.counts {
            @for (key, label, value) in &cells {
                div data-col=(key) { dt { (label) } dd { (value) } }
            }
        }
        @if s.lanes.len() > 1 {
            // A queue with priority lanes: each lane's share of the counts.
            table.lanes {
                thead { tr { th { "Lane" } th { "Ready" } th { "In flight" } th { "Delayed" } th { "Lag" } } }
                tbody {
                    @for l in &s.lanes {
                        tr data-lane=(l.lane.as_str()) {
                            td { a href=(ready_of(l.lane)) { (l.lane) } } td { (l.ready) } td { (l.in_flight) } td { (l.delayed) } td { (fmt::opt_age(l.lag_ms)) }
                        }
                    }
                }
            }
        }
    }
}

/// A partitioned queue's partitions, each with its counts and a link to
/// its own page (a partition is a queue: its jobs are listed there);
/// nothing for a queue without partitions.
fn partitions(parts: &[QueueStats]) -> Markup {
    if parts.is_empty() {
        return html! {};
    }
    html! {
        h2 { "Partitions" }
        table.partitions {
            thead { tr {
                th { "Partition" } th.n { "Ready" } th.n { "In flight" } th.n { "Delayed" } th.n { "Dead" } th.n { "Consumers" }
            } }
            tbody {
                @for p in parts {
                    tr data-partition=(p.name) {
                        td { a href=(queue_url(&p.name, "")) { (p.name) } }
                        td.n { (p.ready) }
                        td.n { (p.in_flight) }
                        td.n { (p.scheduled + p.retrying.unwrap_or(0)) }
                        td.n.bad[p.dead > 0] { a href=(queue_url(&p.name, "dead")) { (p.dead) } }
                        td.n { (p.consumers) }
                    }
                }
            }
        }
    }
}

fn pause_form(app: &App, name: &str, s: &QueueStats) -> Markup {
    if app.config.read_only {
        return html! {};
    }
    html! {
        @if s.paused {
            (layout::button(app, &queue_url(name, "resume"), "Resume", "primary", &[]))
        } @else {
            form.inline method="post" action=(queue_url(name, "pause")) {
                (layout::csrf(app))
                input type="text" name="reason" placeholder="reason (optional)" maxlength="200";
                button type="submit" class="warn" { "Pause" }
                span.muted { " workers stop claiming within a second; running jobs finish" }
            }
        }
    }
}

fn field<'a>(e: Option<&'a inspect::RawEntry>, k: &str) -> &'a str {
    e.and_then(|e| e.get(k)).unwrap_or("–")
}

/// `GET /queues/{q}`: ready entries, oldest first.
pub(crate) async fn ready(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<TabQuery>,
) -> PageResult<Markup> {
    let lane = parse_lane(q.lane.as_deref())?;
    let queue = app.queue(&name).await?;
    let mut conn = app.conn();
    let lanes = queue.lanes(&mut conn).await?;
    let queue = queue.lane(lane);
    let rows = inspect::ready_page(&mut conn, &queue, q.after.as_deref(), ROWS).await?;
    let now = inspect::server_now_ms(&mut conn).await?;
    let next = (rows.len() == ROWS)
        .then(|| rows.last().map(|e| e.id.clone()))
        .flatten();
    let body = html! {
        (picker(&name, "", &lanes, lane))
        @if rows.is_empty() { p.empty { "No ready jobs" @if q.after.is_some() { " after this point" } "." } }
        @else {
            table { thead { tr { th { "Entry" } th { "Job id" } th { "Job" } th.n { "Attempt" } th.n { "Ready for" } } }
            tbody { @for e in &rows { tr {
                td { a href=(layout::job_url(&name, &e.id)) { (e.id) } }
                td { (field(Some(e), "id")) } td { (field(Some(e), "name")) }
                td.n { (e.get("attempt").unwrap_or("1")) }
                td.n { (fmt::age(now.saturating_sub(e.added_ms()))) }
            } } } }
        }
        (pager(next.map(|n| queue_url(&name, "") + &layout::query(&[("after", &n), lane_pair(lane)]))))
    };
    shell(&app, &name, Tab::Ready, q.flash.as_deref(), body).await
}

fn pager(next: Option<String>) -> Markup {
    html! { @if let Some(url) = next { p.pager { a href=(url) { "Next page →" } } } }
}

/// `GET /queues/{q}/pending`: in-flight entries with requeue.
pub(crate) async fn pending(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<TabQuery>,
) -> PageResult<Markup> {
    let lane = parse_lane(q.lane.as_deref())?;
    let queue = app.queue(&name).await?;
    let lanes = queue.lanes(&mut app.conn()).await?;
    let queue = queue.lane(lane);
    let cursor = q
        .after
        .as_deref()
        .map_or_else(|| "-".to_owned(), |a| format!("({a}"));
    let rows = inspect::pending_page(
        &mut app.conn(),
        &queue,
        &PendingFilter::default(),
        &cursor,
        ROWS,
    )
    .await?;
    let next = (rows.len() == ROWS)
        .then(|| rows.last().map(|p| p.entry_id.clone()))
        .flatten();
    let requeue = queue_url(&name, "requeue");
    let body = html! {
        (picker(&name, "pending", &lanes, lane))
        @if rows.is_empty() { p.empty { "Nothing in flight." } }
        @else {
            p.muted { "Requeue puts an entry back in the ready stream now (attempt unchanged), as "
                code { "millrace requeue --min-idle" } " does, if it is still at least as idle as shown here: an entry whose worker renewed its lease since is left alone." }
            table { thead { tr { th { "Entry" } th { "Job id" } th { "Job" } th { "Consumer" } th.n { "Idle" } th.n { "Deliveries" } th {} } }
            tbody { @for p in &rows { tr {
                td { a href=(layout::job_url(&name, &p.entry_id)) { (p.entry_id) } }
                td { @if p.entry.is_some() { (field(p.entry.as_ref(), "id")) } @else { em { "(deleted)" } } }
                td { (field(p.entry.as_ref(), "name")) }
                td { (p.consumer) }
                td.n { (fmt::age(p.idle_ms)) }
                td.n { (p.deliveries) }
                td { (layout::button(&app, &requeue, "Requeue", "", &[("id", &p.entry_id), ("min_idle_ms", &p.idle_ms.to_string()), ("lane", lane.as_str())])) }
            } } } }
        }
        (pager(next.map(|n| queue_url(&name, "pending") + &layout::query(&[("after", &n), lane_pair(lane)]))))
    };
    shell(&app, &name, Tab::Pending, q.flash.as_deref(), body).await
}

/// `GET /queues/{q}/delayed`: scheduled and retrying jobs with run-now.
pub(crate) async fn delayed(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<TabQuery>,
) -> PageResult<Markup> {
    let lane = parse_lane(q.lane.as_deref())?;
    let queue = app.queue(&name).await?;
    let offset = q.offset.unwrap_or(0);
    let mut conn = app.conn();
    let lanes = queue.lanes(&mut conn).await?;
    let queue = queue.lane(lane);
    let rows = inspect::delayed_page(&mut conn, &queue, offset, ROWS).await?;
    let now = inspect::server_now_ms(&mut conn).await?;
    let run_now = queue_url(&name, "run-now");
    let body = html! {
        (picker(&name, "delayed", &lanes, lane))
        @if rows.is_empty() { p.empty { "No delayed or retrying jobs." } }
        @else {
            table { thead { tr { th { "Job id" } th { "Job" } th { "State" } th.n { "Attempt" } th.n { "Runs in" } th { "Error" } th {} } }
            tbody { @for d in &rows { tr {
                td { a href=(layout::job_url(&name, &d.id) + "?at=delayed") { (d.id) } }
                td { (d.get("name").unwrap_or("–")) }
                td.warn[d.is_retry()] { (if d.is_retry() { "retrying" } else { "scheduled" }) }
                td.n { (d.get("attempt").unwrap_or("1")) }
                td.n { (if d.due_ms > now { fmt::age(d.due_ms - now) } else { "now".to_owned() }) }
                td.error title=(d.get("error").unwrap_or("")) { (fmt::clip(d.get("error").unwrap_or(""), 80)) }
                td { (layout::button(&app, &run_now, "Run now", "", &[("id", &d.id)])) }
            } } } }
        }
        @if rows.len() == ROWS {
            (pager(Some(queue_url(&name, "delayed") + &layout::query(&[("offset", &(offset + ROWS).to_string()), lane_pair(lane)]))))
        }
    };
    shell(&app, &name, Tab::Delayed, q.flash.as_deref(), body).await
}

/// `GET /queues/{q}/dead`: dead jobs newest first, filtered like `millrace
/// dead list`, with replay and purge.
pub(crate) async fn dead(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<DeadQuery>,
) -> PageResult<Markup> {
    let queue = app.queue(&name).await?;
    let mut conn = app.conn();
    let now = inspect::server_now_ms(&mut conn).await?;
    let filter = q.filter(now)?;
    let page = inspect::dead_page(
        &mut conn,
        &queue,
        &filter,
        q.before.as_deref(),
        ROWS,
        DEAD_READS,
    )
    .await?;
    let replay = queue_url(&name, "dead/replay");
    let confirm = |action: &str, id: &str| {
        let mut pairs = vec![("action", action), ("id", id)];
        if id.is_empty() {
            pairs.extend(q.pairs());
        }
        queue_url(&name, "dead/confirm") + &layout::query(&pairs)
    };
    let body = html! {
        form.filters method="get" action=(queue_url(&name, "dead")) {
            label { "Job " input type="text" name="job" value=(q.job); }
            label { "Error contains " input type="text" name="error" value=(q.error); }
            label { "Since " input type="text" name="since" value=(q.since) placeholder="1h or 2026-11-21T09:00:00Z"; }
            button type="submit" { "Filter" }
            @if !filter.is_empty() { " " a href=(queue_url(&name, "dead")) { "clear" } }
        }
        @if !app.config.read_only {
            p.bulk {
                (layout::link_button(&app, &confirm("replay", ""), if filter.is_empty() { "Replay all…" } else { "Replay all matching…" }, ""))
                " "
                (layout::link_button(&app, &confirm("purge", ""), if filter.is_empty() { "Purge all…" } else { "Purge all matching…" }, "danger"))
            }
        }
        @if page.entries.is_empty() {
            p.empty { "No dead jobs match" @if page.next.is_some() { " among the " (page.scanned) " read here" } "." }
        } @else {
            table.dead { thead { tr { th { "Entry" } th { "Job id" } th { "Job" } th.n { "Attempt" } th.n { "Died" } th { "Error" } th {} } }
            tbody { @for e in &page.entries { tr data-entry=(e.id) {
                td { a href=(layout::job_url(&name, &e.id)) { (e.id) } }
                td { (field(Some(e), "id")) }
                td { (field(Some(e), "name")) }
                td.n { (e.get("attempt").unwrap_or("1")) }
                td.n { (fmt::age(now.saturating_sub(e.get("dead_at").and_then(|t| t.parse().ok()).unwrap_or_else(|| e.added_ms())))) " ago" }
                td.error title=(e.get("error").unwrap_or("")) { (fmt::clip(e.get("error").unwrap_or(""), 80)) }
                td.actions {
                    (layout::button(&app, &replay, "Replay", "", &[("id", &e.id)]))
                    (layout::link_button(&app, &confirm("purge", &e.id), "Purge…", "danger"))
                }
            } } } }
        }
        @if let Some(n) = &page.next {
            (pager(Some(queue_url(&name, "dead") + &layout::query(&[q.pairs()[0], q.pairs()[1], q.pairs()[2], ("before", n)]))))
        }
    };
    shell(&app, &name, Tab::Dead, q.flash.as_deref(), body).await
}
