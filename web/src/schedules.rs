//! The schedules page: every queue's cron schedules (definition, last and
//! next fire, paused) as `millrace schedules` lists them, with pause and
//! resume, the twins of `millrace schedules pause|resume`, through the same
//! `millrace_core::schedule::store` calls.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use maud::{Markup, html};
use millrace_core::Queue;
use millrace_core::inspect;
use millrace_core::schedule::store::{self, ScheduleInfo};
use serde::Deserialize;

use crate::app::App;
use crate::error::{PageError, PageResult};
use crate::fmt;
use crate::layout::{self, queue_url};

/// `?flash=` after an action.
#[derive(Debug, Deserialize)]
pub(crate) struct FlashQuery {
    flash: Option<String>,
}

/// `GET /schedules`
pub(crate) async fn page(
    State(app): State<App>,
    Query(q): Query<FlashQuery>,
) -> PageResult<Markup> {
    let mut conn = app.conn();
    let names = inspect::known_queues(&mut conn, &app.config.prefix).await?;
    let mut rows: Vec<(String, ScheduleInfo)> = Vec::new();
    for name in names {
        let Ok(queue) = Queue::with_prefix(&app.config.prefix, &name) else {
            continue; // a foreign entry in the registry
        };
        for s in store::list(&mut conn, &queue).await? {
            rows.push((name.clone(), s));
        }
    }
    let now = inspect::server_now_ms(&mut conn).await?;
    let dash = |v: Option<&str>| v.unwrap_or("–").to_owned();
    Ok(layout::page(
        &app,
        "Schedules",
        q.flash.as_deref(),
        html! {
            h1 { "Schedules" }
            p.muted { "Cron schedules the workers registered at start. A paused schedule's fires are skipped, not caught up on resume." }
            @if rows.is_empty() { p.empty { "No schedules: workers register theirs when they start." } }
            @else {
                table.schedules { thead { tr { th { "Name" } th { "Queue" } th { "Cron" } th { "Time zone" } th { "Job" } th { "Missed" } th.n { "Last fire" } th.n { "Next fire" } th { "Paused" } th {} } }
                tbody { @for (queue, s) in &rows { @let d = s.def.as_ref(); tr data-schedule=(s.name) {
                    td { (s.name) }
                    td { a href=(queue_url(queue, "")) { (queue) } }
                    td { code { (dash(d.map(|d| d.cron.as_str()))) } }
                    td { (dash(d.map(|d| d.tz.as_str()))) }
                    td { (dash(d.map(|d| d.job.as_str()))) }
                    td { (d.map_or_else(|| "–".to_owned(), |d| d.missed.to_string())) }
                    td.n { (s.fired.map_or_else(|| "–".to_owned(), |ms| fmt::age(now.saturating_sub(ms)) + " ago")) }
                    td.n { (s.next_fire(now).map_or_else(|| "–".to_owned(), |ms| "in ".to_owned() + &fmt::age(ms.saturating_sub(now)))) }
                    td.warn[s.paused_since.is_some()] { (s.paused_since.map_or_else(|| "no".to_owned(), |since| format!("yes, {} ago", fmt::age(now.saturating_sub(since))))) }
                    td { @if d.is_some() {
                        @if s.paused_since.is_some() {
                            (layout::button(&app, &queue_url(queue, "schedules/resume"), "Resume", "", &[("name", &s.name)]))
                        } @else {
                            (layout::button(&app, &queue_url(queue, "schedules/pause"), "Pause", "warn", &[("name", &s.name)]))
                        }
                    } }
                } } } }
            }
        },
    ))
}

/// Which schedule.
#[derive(Debug, Deserialize)]
pub(crate) struct NameForm {
    name: String,
}

/// `POST /queues/{q}/schedules/pause` (`millrace schedules pause <name>
/// --queue <q>`).
pub(crate) async fn pause(
    state: State<App>,
    queue: Path<String>,
    form: Form<NameForm>,
) -> PageResult<Redirect> {
    set_paused(state, queue, form, true).await
}

/// `POST /queues/{q}/schedules/resume` (`millrace schedules resume <name>
/// --queue <q>`).
pub(crate) async fn resume(
    state: State<App>,
    queue: Path<String>,
    form: Form<NameForm>,
) -> PageResult<Redirect> {
    set_paused(state, queue, form, false).await
}

async fn set_paused(
    State(app): State<App>,
    Path(name): Path<String>,
    Form(f): Form<NameForm>,
    paused: bool,
) -> PageResult<Redirect> {
    app.writable()?;
    let queue = app.queue(&name).await?;
    if !store::set_paused(&mut app.conn(), &queue, &f.name, paused).await? {
        return Err(PageError::NotFound(format!(
            "no schedule {:?} in queue {name:?}: workers register theirs when they start",
            f.name
        )));
    }
    let flash = if paused {
        format!(
            "paused schedule {:?} in queue {name:?}: its fires are skipped until resumed",
            f.name
        )
    } else {
        format!(
            "resumed schedule {:?} in queue {name:?}: it fires again from its next fire time",
            f.name
        )
    };
    Ok(Redirect::to(
        &("/schedules".to_owned() + &layout::query(&[("flash", &flash)])),
    ))
}
