//! The confirmation page of replay and purge: what will be touched (the
//! count, the filter, the first few jobs), then one button, like the CLI's
//! prompt. Only its form carries `until` (the last id counted) and
//! `confirmed`, without which the actions refuse a bulk run or a purge.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use millrace_core::inspect::{self, DeadMatches};
use serde::Deserialize;

use crate::app::App;
use crate::error::{PageError, PageResult};
use crate::fmt;
use crate::layout::{self, queue_url};
use crate::queue_page::DeadQuery;

/// `?action=replay|purge` and either `id` or the dead tab's filters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConfirmQuery {
    action: String,
    id: String,
    job: String,
    error: String,
    since: String,
}

/// `GET /queues/{q}/dead/confirm`
pub(crate) async fn page(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<ConfirmQuery>,
) -> PageResult<Markup> {
    app.writable()?;
    let (verb, what) = match q.action.as_str() {
        "replay" => ("replay", "back to the ready stream, attempts reset to 1"),
        "purge" => ("purge", "deleting them for good"),
        other => {
            return Err(PageError::BadRequest(format!(
                "unknown action {other:?}: replay or purge"
            )));
        }
    };
    let queue = app.queue(&name).await?;
    let mut conn = app.conn();
    let now = inspect::server_now_ms(&mut conn).await?;
    let dq = DeadQuery {
        job: q.job.clone(),
        error: q.error.clone(),
        since: q.since.clone(),
        before: None,
        flash: None,
    };
    let filter = dq.filter(now)?;
    let matches = if q.id.is_empty() {
        inspect::dead_matches(&mut conn, &queue, &filter, 5).await?
    } else {
        if !inspect::is_entry_id(&q.id) {
            return Err(PageError::BadRequest(format!(
                "{:?} is not a dead entry id",
                q.id
            )));
        }
        let e = inspect::entry(&mut conn, &queue.keys().dead, &q.id)
            .await?
            .ok_or_else(|| {
                PageError::NotFound(format!("no dead job {:?} in queue {name:?}", q.id))
            })?;
        let mut m = DeadMatches::default();
        m.count = 1;
        m.last = Some(e.id.clone());
        m.sample = vec![e];
        m
    };
    let described = {
        let mut parts = Vec::new();
        if !q.id.is_empty() {
            parts.push(format!("entry {}", q.id));
        }
        if !q.job.is_empty() {
            parts.push(format!("job {:?}", q.job));
        }
        if !q.error.is_empty() {
            parts.push(format!("error containing {:?}", q.error));
        }
        if let Some(ms) = filter.since_ms {
            parts.push(format!("dead since {}", fmt::at(ms)));
        }
        if parts.is_empty() {
            "all".to_owned()
        } else {
            parts.join(", ")
        }
    };
    let n = fmt::count(matches.count, "dead job", "dead jobs");
    let back = queue_url(&name, "dead") + &layout::query(&dq.pairs());
    let body = match &matches.last {
        None => html! {
            h1 { "Nothing to " (verb) }
            p.empty { "No dead jobs match in queue " code { (name) } " (" (described) ")." }
            p { a href=(back) { "← back to the dead jobs" } }
        },
        Some(last) => html! {
            h1 { "Confirm: " (verb) " " (n) }
            p.confirm {
                "Will " (verb) " " strong { (n) } " of queue " code { (name) } " (" (described) "), " (what) "."
                @if matches.count > matches.sample.len() as u64 { " First ones:" }
            }
            table { thead { tr { th { "Entry" } th { "Job id" } th { "Job" } th.n { "Attempt" } th { "Error" } } }
            tbody { @for e in &matches.sample { tr {
                td { (e.id) } td { (e.get("id").unwrap_or("–")) } td { (e.get("name").unwrap_or("–")) }
                td.n { (e.get("attempt").unwrap_or("1")) }
                td.error { (fmt::clip(e.get("error").unwrap_or(""), 80)) }
            } } } }
            p.muted { "Jobs that die after this count are left alone: the " (verb) " stops at entry " (last) "." }
            form method="post" action=(queue_url(&name, &format!("dead/{verb}"))) {
                (layout::csrf(&app))
                input type="hidden" name="confirmed" value="yes";
                @if q.id.is_empty() {
                    input type="hidden" name="until" value=(last);
                    @if let Some(j) = &filter.job { input type="hidden" name="job" value=(j); }
                    @if !q.error.is_empty() { input type="hidden" name="error" value=(q.error); }
                    @if let Some(ms) = filter.since_ms { input type="hidden" name="since_ms" value=(ms); }
                } @else {
                    input type="hidden" name="id" value=(q.id);
                }
                button type="submit" class=(if verb == "purge" { "danger" } else { "primary" }) { (capital(verb)) " " (n) }
                " " a href=(back) { "Cancel" }
            }
        },
    };
    Ok(layout::page(
        &app,
        &format!("Confirm {verb}"),
        None,
        html! {
            p.crumbs { a href="/" { "Queues" } " / " a href=(queue_url(&name, "")) { (name) } " / " a href=(back) { "dead" } }
            (body)
        },
    ))
}

fn capital(verb: &str) -> String {
    let mut c = verb.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}
