//! One job's page: everywhere it is (a replayed job may also have an old
//! dead entry), its attempts, error, other fields and pretty payload, with
//! the action its state allows. By entry id it is a direct look-up, and so
//! is a delayed job linked from its tab (`?at=delayed`); any other job id
//! scans the streams in pages, like `millrace show`.

use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use maud::{Markup, html};
use millrace_core::Priority;
use millrace_core::inspect::{self, Location};
use serde::Deserialize;

use crate::app::App;
use crate::error::{PageError, PageResult};
use crate::fmt;
use crate::layout::{self, queue_url};

/// `?id=` of the search box.
#[derive(Debug, Deserialize)]
pub(crate) struct FindQuery {
    id: String,
}

/// `?at=delayed`: look only in the delayed set.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct JobQuery {
    at: String,
}

/// `GET /queues/{q}/find?id=`: to the job's page.
pub(crate) async fn find(Path(name): Path<String>, Query(q): Query<FindQuery>) -> Redirect {
    Redirect::to(&layout::job_url(&name, q.id.trim()))
}

/// What a location shows.
struct Card<'a> {
    state: &'static str,
    entry: Option<&'a str>,
    fields: &'a [(String, String)],
    place: String,
    action: Markup,
}

fn get<'a>(fields: &'a [(String, String)], k: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|(f, _)| f == k)
        .map(|(_, v)| v.as_str())
}

fn card(app: &App, name: &str, loc: &Location, now: u64) -> Option<Markup> {
    let one = |url: &str, label: &str, id: &str| {
        layout::button(app, &queue_url(name, url), label, "", &[("id", id)])
    };
    let c = match loc {
        Location::Ready(e) => Card {
            state: "ready",
            entry: Some(&e.id),
            fields: &e.fields,
            place: format!(
                "waiting for a worker for {}",
                fmt::age(now.saturating_sub(e.added_ms()))
            ),
            action: html! {},
        },
        Location::InFlight {
            entry,
            consumer,
            idle_ms,
            deliveries,
        } => Card {
            state: "in flight",
            entry: Some(&entry.id),
            fields: &entry.fields,
            place: format!(
                "held by consumer {consumer} (idle {}, delivered {deliveries} times)",
                fmt::age(*idle_ms)
            ),
            action: layout::button(
                app,
                &queue_url(name, "requeue"),
                "Requeue",
                "",
                &[
                    ("id", &entry.id),
                    ("min_idle_ms", &idle_ms.to_string()),
                    ("lane", entry.lane.as_str()),
                ],
            ),
        },
        Location::PendingDeleted {
            entry_id,
            consumer,
            lane,
        } => Card {
            state: "pending (deleted)",
            entry: Some(entry_id),
            fields: &[],
            place: format!(
                "pending for consumer {consumer} but its entry was deleted: nothing left to run (requeue drops it)"
            ),
            action: layout::button(
                app,
                &queue_url(name, "requeue"),
                "Requeue",
                "",
                &[("id", entry_id), ("lane", lane.as_str())],
            ),
        },
        Location::Delayed(d) => Card {
            state: if d.is_retry() {
                "retrying"
            } else {
                "scheduled"
            },
            entry: None,
            fields: d.fields.as_deref().unwrap_or_default(),
            place: if d.due_ms > now {
                format!(
                    "runs in {} ({})",
                    fmt::age(d.due_ms - now),
                    fmt::at(d.due_ms)
                )
            } else {
                format!(
                    "due {} ago: the next promotion makes it ready",
                    fmt::age(now - d.due_ms)
                )
            },
            action: one("run-now", "Run now", &d.id),
        },
        Location::Dead(e) => {
            let at = get(&e.fields, "dead_at")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| e.added_ms());
            let purge = queue_url(name, "dead/confirm")
                + &layout::query(&[("action", "purge"), ("id", &e.id)]);
            Card {
                state: "dead",
                entry: Some(&e.id),
                fields: &e.fields,
                place: format!(
                    "dead-lettered {} ago ({})",
                    fmt::age(now.saturating_sub(at)),
                    fmt::at(at)
                ),
                action: html! {
                    (one("dead/replay", "Replay", &e.id))
                    (layout::link_button(app, &purge, "Purge…", "danger"))
                },
            }
        }
        _ => return None,
    };
    let f = c.fields;
    let payload = get(f, "payload").map(|p| {
        serde_json::from_str::<serde_json::Value>(p)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| p.to_owned())
    });
    Some(html! {
        section.job {
            h2 { span.state { (c.state) } " " (get(f, "name").unwrap_or("")) }
            dl.fields {
                dt { "where" } dd { (c.place) }
                @if loc.lane() != Priority::Default { dt { "lane" } dd { (loc.lane()) } }
                @if let Some(e) = c.entry { dt { "entry" } dd { code { (e) } } }
                dt { "job id" } dd { code { (get(f, "id").or(match loc { Location::Delayed(d) => Some(d.id.as_str()), _ => None }).unwrap_or("–")) } }
                dt { "attempt" } dd { (get(f, "attempt").unwrap_or("1")) @if let Some(m) = get(f, "max_attempts") { " of " (m) } }
                @if let Some(t) = get(f, "enqueued_at").and_then(|t| t.parse::<u64>().ok()) {
                    dt { "enqueued" } dd { (fmt::age(now.saturating_sub(t))) " ago (" (fmt::at(t)) ")" }
                }
                @if let Some(e) = get(f, "error") { dt { "error" } dd { pre.error { (e) } } }
                @if let Some(was) = get(f, "entry").filter(|_| matches!(loc, Location::Dead(_))) {
                    dt { "was entry" } dd { code { (was) } }
                }
                @for (k, v) in f.iter().filter(|(k, _)| !inspect::LABELLED_FIELDS.contains(&k.as_str())) {
                    dt { (k) } dd { code { (v) } }
                }
            }
            @if let Some(p) = payload { h3 { "Payload" } pre.payload { (p) } }
            p.actions { (c.action) }
        }
    })
}

/// `GET /queues/{q}/jobs/{id}`: by job id or entry id.
pub(crate) async fn page(
    State(app): State<App>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<JobQuery>,
) -> PageResult<Markup> {
    let queue = app.queue(&name).await?;
    let mut conn = app.conn();
    // The delayed tab links with `?at=delayed`: one look-up, no scan.
    let found = if q.at == "delayed" {
        inspect::delayed_job(&mut conn, &queue, &id)
            .await?
            .map(Location::Delayed)
            .into_iter()
            .collect()
    } else {
        inspect::find(&mut conn, &queue, &id).await?
    };
    if found.is_empty() {
        return Err(PageError::NotFound(format!(
            "no job or entry {id:?} in queue {name:?} (looked in the ready stream, pending entries, delayed jobs and the dead-letter stream)"
        )));
    }
    let now = inspect::server_now_ms(&mut conn).await?;
    Ok(layout::page(
        &app,
        &id,
        None,
        html! {
            p.crumbs { a href="/" { "Queues" } " / " a href=(queue_url(&name, "")) { (name) } " / " (id) }
            h1 { "Job " code { (id) } }
            @if found.len() > 1 { p.muted { "Found in " (found.len()) " places (a replayed job keeps no old dead entry, but a job id may repeat)." } }
            @for loc in &found { @if let Some(c) = card(&app, &name, loc, now) { (c) } }
            p.muted { "History: Millrace keeps no per-job history yet; this is where the job is now." }
        },
    ))
}
