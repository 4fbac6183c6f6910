//! The actions, each a POST behind the guard (auth, read-only, same
//! origin, CSRF token) and each the twin of a CLI command through the same
//! `millrace_core::admin` call: pause/resume, requeue one pending entry,
//! run one delayed job now, replay or purge one dead job or a confirmed
//! filtered set. Each answers with a redirect to the tab it came from and a
//! line saying what happened.

use std::time::Duration;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Redirect;
use millrace_core::admin::{self, DeadAction};
use millrace_core::inspect::{self, DeadFilter};
use serde::Deserialize;

use crate::app::App;
use crate::error::{PageError, PageResult};
use crate::fmt;
use crate::layout::{self, queue_url};

/// A redirect to `url` with `flash` to show there.
fn back(url: &str, flash: &str) -> Redirect {
    Redirect::to(&(url.to_owned() + &layout::query(&[("flash", flash)])))
}

/// The form of pause.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PauseForm {
    reason: String,
}

/// `POST /queues/{q}/pause` (`millrace pause <q> --reason`).
pub(crate) async fn pause(
    State(app): State<App>,
    Path(name): Path<String>,
    Form(f): Form<PauseForm>,
) -> PageResult<Redirect> {
    app.writable()?;
    let queue = app.queue(&name).await?;
    let reason = f.reason.trim();
    queue
        .pause(&mut app.conn(), (!reason.is_empty()).then_some(reason))
        .await?;
    Ok(back(
        &queue_url(&name, ""),
        &format!(
            "paused queue {name:?}: workers stop claiming within a second; running jobs finish"
        ),
    ))
}

/// `POST /queues/{q}/resume` (`millrace resume <q>`).
pub(crate) async fn resume(
    State(app): State<App>,
    Path(name): Path<String>,
) -> PageResult<Redirect> {
    app.writable()?;
    let queue = app.queue(&name).await?;
    queue.set_paused(&mut app.conn(), false).await?;
    Ok(back(
        &queue_url(&name, ""),
        &format!("resumed queue {name:?}: workers claim again within a second"),
    ))
}

/// One id.
#[derive(Debug, Deserialize)]
pub(crate) struct OneForm {
    id: String,
}

fn entry_id(id: &str) -> PageResult<()> {
    if inspect::is_entry_id(id) {
        Ok(())
    } else {
        Err(PageError::BadRequest(format!(
            "{id:?} is not a stream entry id"
        )))
    }
}

/// The form of requeue: one entry and the idle time the page showed.
#[derive(Debug, Deserialize)]
pub(crate) struct RequeueForm {
    id: String,
    /// Requeue only if still idle at least this long (the page's reading):
    /// a lease renewed since means a live worker runs it.
    #[serde(default)]
    min_idle_ms: u64,
    /// The lane whose stream holds the entry (high, default, low; empty
    /// for default).
    #[serde(default)]
    lane: String,
}

/// `POST /queues/{q}/requeue` with one entry (`millrace requeue <q>
/// --min-idle <as shown>` for that entry alone).
pub(crate) async fn requeue(
    State(app): State<App>,
    Path(name): Path<String>,
    Form(f): Form<RequeueForm>,
) -> PageResult<Redirect> {
    app.writable()?;
    entry_id(&f.id)?;
    let lane = crate::lanes::parse_lane(Some(&f.lane))?;
    let queue = app.queue(&name).await?.lane(lane);
    let r = admin::requeue(
        &mut app.conn(),
        &queue,
        std::slice::from_ref(&f.id),
        Duration::from_millis(f.min_idle_ms),
        None,
    )
    .await?;
    let flash = if r.requeued > 0 {
        format!(
            "requeued entry {}: it is ready again (attempt unchanged)",
            f.id
        )
    } else if r.dropped > 0 {
        format!(
            "dropped entry {}: it was pending but its fields were already deleted",
            f.id
        )
    } else {
        format!(
            "left entry {} alone: finished, moved, or renewed by a live worker meanwhile",
            f.id
        )
    };
    Ok(back(&queue_url(&name, "pending"), &flash))
}

/// `POST /queues/{q}/run-now` with one job id (`millrace delayed run-now
/// <q> <id>`).
pub(crate) async fn run_now(
    State(app): State<App>,
    Path(name): Path<String>,
    Form(f): Form<OneForm>,
) -> PageResult<Redirect> {
    app.writable()?;
    let queue = app.queue(&name).await?;
    let moved = admin::run_now(&mut app.conn(), &queue, std::slice::from_ref(&f.id)).await?;
    let flash = if moved > 0 {
        format!("job {} is ready now", f.id)
    } else {
        format!(
            "job {} was no longer delayed (it ran or moved meanwhile)",
            f.id
        )
    };
    Ok(back(&queue_url(&name, "delayed"), &flash))
}

/// Replay or purge: one entry, or a filtered set up to `until`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DeadForm {
    id: String,
    job: String,
    error: String,
    since_ms: Option<u64>,
    until: String,
    confirmed: String,
}

/// `POST /queues/{q}/dead/replay` (`millrace dead replay`).
pub(crate) async fn replay(
    state: State<App>,
    name: Path<String>,
    form: Form<DeadForm>,
) -> PageResult<Redirect> {
    dead_action(state, name, form, DeadAction::Replay).await
}

/// `POST /queues/{q}/dead/purge` (`millrace dead purge`).
pub(crate) async fn purge(
    state: State<App>,
    name: Path<String>,
    form: Form<DeadForm>,
) -> PageResult<Redirect> {
    dead_action(state, name, form, DeadAction::Purge).await
}

async fn dead_action(
    State(app): State<App>,
    Path(name): Path<String>,
    Form(f): Form<DeadForm>,
    action: DeadAction,
) -> PageResult<Redirect> {
    app.writable()?;
    let queue = app.queue(&name).await?;
    let mut conn = app.conn();
    // Like the CLI: replaying one job needs no confirmation; purging, and
    // any bulk run, come from the confirmation page.
    if f.confirmed != "yes" && (action == DeadAction::Purge || f.id.is_empty()) {
        return Err(PageError::BadRequest(format!(
            "a {} of dead jobs goes through its confirmation page first",
            action.verb()
        )));
    }
    if action == DeadAction::Replay {
        queue.declare(&mut conn).await?;
    }
    let done = if f.id.is_empty() {
        entry_id(&f.until)?;
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let filter = DeadFilter::new(opt(&f.job), opt(&f.error), f.since_ms);
        admin::dead_bulk(&mut conn, &queue, &filter, &f.until, action, |_| {}).await?
    } else {
        entry_id(&f.id)?;
        action
            .apply(&mut conn, &queue, std::slice::from_ref(&f.id))
            .await?
    };
    let flash = format!(
        "{} {} of queue {name:?}",
        action.past(),
        fmt::count(done, "dead job", "dead jobs")
    );
    Ok(back(&queue_url(&name, "dead"), &flash))
}
