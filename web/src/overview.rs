//! The overview: every queue with its counts, ages, pause state, counters,
//! rates and a throughput sparkline. The table refreshes itself every 2 s
//! (`app.js` fetches `/fragments/overview`).

use axum::extract::{Query, State};
use maud::{Markup, html};
use millrace_core::Queue;
use millrace_core::inspect::{self, QueueStats};
use serde::Deserialize;

use crate::app::App;
use crate::error::PageResult;
use crate::fmt;
use crate::history::Rates;
use crate::layout::{self, queue_url};

/// `?flash=` after an action.
#[derive(Debug, Deserialize)]
pub(crate) struct Flash {
    flash: Option<String>,
}

/// `GET /`
pub(crate) async fn page(State(app): State<App>, Query(f): Query<Flash>) -> PageResult<Markup> {
    let table = table(&app).await?;
    Ok(layout::page(
        &app,
        "Queues",
        f.flash.as_deref(),
        html! {
            h1 { "Queues" }
            div #overview data-poll="/fragments/overview" { (table) }
            p.muted { "Refreshes every 2 s. Rates are over the last 10 s of this page being open; the chart is jobs processed per second." }
        },
    ))
}

/// `GET /fragments/overview`: the table alone.
pub(crate) async fn fragment(State(app): State<App>) -> PageResult<Markup> {
    table(&app).await
}

async fn table(app: &App) -> PageResult<Markup> {
    let mut conn = app.conn();
    let names = inspect::known_queues(&mut conn, &app.config.prefix).await?;
    let mut rows = Vec::with_capacity(names.len());
    for name in &names {
        let Ok(queue) = Queue::with_prefix(&app.config.prefix, name) else {
            continue; // a foreign entry in the registry
        };
        rows.push(inspect::stats(&mut conn, &queue).await?);
    }
    let now = inspect::server_now_ms(&mut conn).await?;
    let rates: Vec<Rates> = {
        let mut h = app
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.keep_only(&names);
        rows.iter()
            .map(|s| h.record(&s.name, s.processed, s.retried + s.dead_lettered))
            .collect()
    };
    if rows.is_empty() {
        return Ok(html! {
            p.empty { "No queues under prefix " code { (app.config.prefix) } " yet: a queue is listed once a worker or producer declared it." }
        });
    }
    Ok(html! {
        table.queues {
            thead { tr {
                th { "Queue" } th.n { "Ready" } th.n { "In flight" } th.n { "Delayed" } th.n { "Retrying" }
                th.n { "Dead" } th.n { "Consumers" } th.n { "Lag" } th.n { "Oldest" } th { "Paused" }
                th.n { "Processed" } th.n { "Failed" } th.n { "Processed/s" } th.n { "Failed/s" } th { "Throughput" }
            } }
            tbody {
                @for (i, (s, r)) in rows.iter().zip(&rates).enumerate() {
                    (row(s, r, now))
                    @if let Some((base, members)) = inspect::partition_group_ending_at(&rows, i) {
                        (total_row(&QueueStats::total(base, &members)))
                    }
                }
            }
        }
    })
}

fn row(s: &QueueStats, r: &Rates, now: u64) -> Markup {
    let url = queue_url(&s.name, "");
    let failed = s.retried + s.dead_lettered;
    html! {
        tr data-queue=(s.name) {
            td { a href=(url) { (s.name) } }
            td.n data-col="ready" { (s.ready) }
            td.n data-col="in_flight" { a href=(queue_url(&s.name, "pending")) { (s.in_flight) } }
            td.n data-col="scheduled" { a href=(queue_url(&s.name, "delayed")) { (s.scheduled) } }
            td.n.warn[s.retrying.unwrap_or(1) > 0] data-col="retrying" {
                (s.retrying.map_or_else(|| "?".to_owned(), |n| n.to_string()))
            }
            td.n.bad[s.dead > 0] data-col="dead" { a href=(queue_url(&s.name, "dead")) { (s.dead) } }
            td.n.bad[s.consumers == 0 && s.ready > 0] data-col="consumers" {
                a href=(queue_url(&s.name, "consumers")) { (s.consumers) }
            }
            td.n.warn[s.lag_ms.unwrap_or(0) > 60_000] data-col="lag" { (fmt::opt_age(s.lag_ms)) }
            td.n data-col="oldest" { (fmt::opt_age(s.oldest_ms)) }
            td.warn[s.paused] data-col="paused" { (paused(s, now)) }
            td.n data-col="processed" { (s.processed) }
            td.n data-col="failed" { (failed) }
            td.n data-col="processed_rate" { (r.processed.map_or_else(|| "–".to_owned(), fmt::rate)) }
            td.n data-col="failed_rate" { (r.failed.map_or_else(|| "–".to_owned(), fmt::rate)) }
            td { (layout::sparkline(&r.series)) }
        }
    }
}

/// The total row of a partitioned queue, after its last partition: the
/// counts of the queue and its partitions together (no links: each
/// partition's row has its own).
fn total_row(t: &QueueStats) -> Markup {
    html! {
        tr.total data-queue=(t.name) {
            td { (t.name) }
            td.n data-col="ready" { (t.ready) }
            td.n data-col="in_flight" { (t.in_flight) }
            td.n data-col="scheduled" { (t.scheduled) }
            td.n data-col="retrying" {
                (t.retrying.map_or_else(|| "?".to_owned(), |n| n.to_string()))
            }
            td.n.bad[t.dead > 0] data-col="dead" { (t.dead) }
            td.n data-col="consumers" { "–" }
            td.n data-col="lag" { (fmt::opt_age(t.lag_ms)) }
            td.n data-col="oldest" { (fmt::opt_age(t.oldest_ms)) }
            td data-col="paused" { @if t.paused { "yes" } @else { "–" } }
            td.n data-col="processed" { (t.processed) }
            td.n data-col="failed" { (t.retried + t.dead_lettered) }
            td.n { "–" } td.n { "–" } td {}
        }
    }
}

/// "no", or "yes (12m): deploy freeze".
pub(crate) fn paused(s: &QueueStats, now: u64) -> String {
    let Some(p) = s.pause.as_ref().filter(|_| s.paused) else {
        return "no".to_owned();
    };
    let mut out = "yes".to_owned();
    if let Some(since) = p.since_ms {
        out.push_str(&format!(" ({})", fmt::age(now.saturating_sub(since))));
    }
    if let Some(reason) = &p.reason {
        out.push_str(": ");
        out.push_str(&fmt::clip(reason, 60));
    }
    out
}
