//! A queue's consumers: state from heartbeats (alive, late, dead), pending
//! entries, idle time; prune removes dead ones that hold nothing, like
//! `millrace consumers --prune` (the same atomic script re-checks each).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use maud::{Markup, html};
use millrace_core::inspect::{self, ConsumerInfo};
use millrace_core::{Leave, PruneRule};
use serde::Deserialize;

use crate::app::App;
use crate::error::PageResult;
use crate::fmt;
use crate::layout::{self, queue_url};

/// Workers beat every second: older than this (three missed beats) is late.
const LATE_AFTER: Duration = Duration::from_secs(3);

fn state(c: &ConsumerInfo, dead_after: Duration) -> &'static str {
    if c.is_dead(dead_after) {
        "dead"
    } else if c.is_dead(LATE_AFTER) {
        "late"
    } else {
        "alive"
    }
}

/// `?flash=`
#[derive(Debug, Deserialize)]
pub(crate) struct FlashQuery {
    flash: Option<String>,
}

/// `GET /queues/{q}/consumers`
pub(crate) async fn page(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<FlashQuery>,
) -> PageResult<Markup> {
    let queue = app.queue(&name).await?;
    let rows = inspect::consumers(&mut app.conn(), &queue).await?;
    let dead_after = app.config.dead_after;
    let prunable = rows
        .iter()
        .filter(|c| c.is_dead(dead_after) && c.pending == 0)
        .count();
    let holding: Vec<&ConsumerInfo> = rows
        .iter()
        .filter(|c| c.is_dead(dead_after) && c.pending > 0)
        .collect();
    Ok(layout::page(
        &app,
        &format!("{name} consumers"),
        q.flash.as_deref(),
        html! {
            p.crumbs { a href="/" { "Queues" } " / " a href=(queue_url(&name, "")) { (name) } " / consumers" }
            h1 { "Consumers of " code { (name) } }
            p.muted { "alive: beat under 3 s ago · late: missed beats · dead: silent for " (fmt::age(dead_after.as_millis() as u64)) " or never beat. Idle is the group's time since the consumer last read or claimed." }
            @if rows.is_empty() { p.empty { "No consumers." } }
            @else {
                table.consumers { thead { tr { th { "Consumer" } th { "State" } th.n { "Pending" } th.n { "Idle" } th.n { "Last heartbeat" } } }
                tbody { @for c in &rows { @let s = state(c, dead_after); tr data-consumer=(c.name) {
                    td { (c.name) }
                    td.bad[s == "dead"].warn[s == "late"] { (s) }
                    td.n.bad[s == "dead" && c.pending > 0] { (c.pending) }
                    td.n { (fmt::opt_age(c.idle_ms)) }
                    td.n { (c.heartbeat_age_ms.map_or_else(|| "never".to_owned(), |a| fmt::age(a) + " ago")) }
                } } } }
            }
            @for c in &holding {
                p.warn { "Dead consumer " code { (c.name) } " holds " (c.pending) " pending: "
                    a href=(queue_url(&name, "pending")) { "requeue them" } " first; prune keeps it until then." }
            }
            @if prunable > 0 {
                p { (layout::button(&app, &queue_url(&name, "consumers/prune"), &format!("Prune {}", fmt::count(prunable as u64, "dead consumer", "dead consumers")), "warn", &[])) }
            }
        },
    ))
}

/// `POST /queues/{q}/consumers/prune`
pub(crate) async fn prune(
    State(app): State<App>,
    Path(name): Path<String>,
) -> PageResult<Redirect> {
    app.writable()?;
    let queue = app.queue(&name).await?;
    let mut conn = app.conn();
    let dead_after = app.config.dead_after;
    let mut pruned = 0u64;
    let mut notes = Vec::new();
    for c in inspect::consumers(&mut conn, &queue).await? {
        if !c.is_dead(dead_after) {
            continue;
        }
        if c.pending > 0 {
            notes.push(format!(
                "kept {} (holds {} pending: requeue them first)",
                c.name, c.pending
            ));
            continue;
        }
        let rule = PruneRule {
            min_idle: dead_after,
            min_silence: dead_after,
        };
        match queue.prune_consumer(&mut conn, &c.name, rule).await? {
            Leave::Removed => pruned += 1,
            Leave::Pending => notes.push(format!(
                "kept {}: entries became pending for it meanwhile",
                c.name
            )),
            Leave::Busy => notes.push(format!(
                "kept {}: the group saw it read or claim recently",
                c.name
            )),
            Leave::Alive => notes.push(format!("kept {}: it sent a heartbeat meanwhile", c.name)),
        }
    }
    let mut flash = format!(
        "pruned {}",
        fmt::count(pruned, "dead consumer", "dead consumers")
    );
    for n in notes {
        flash.push_str("; ");
        flash.push_str(&n);
    }
    let url = queue_url(&name, "consumers") + &layout::query(&[("flash", &flash)]);
    Ok(Redirect::to(&url))
}
