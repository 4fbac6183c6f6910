//! `millrace cancel <queue> <job-id>`: cancel one job. A delayed job, or a
//! ready one no worker took yet, is removed; a running one is marked, and
//! its worker cancels the attempt at its next lease renewal (the handler's
//! token fires) and records it as cancelled: not retried, not
//! dead-lettered. Asks first (or `--yes`).

use anyhow::bail;
use millrace_core::Cancel;
use millrace_core::inspect::{self, Location};
use serde::Serialize;

use crate::Ctx;
use crate::dead::say;
use crate::output::{self, Confirm, Decision};

/// Flags of `millrace cancel`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue.
    queue: String,
    /// The job id (or the job's stream entry id).
    job_id: String,
    #[command(flatten)]
    confirm: Confirm,
}

#[derive(Debug, Serialize)]
struct Out<'a> {
    queue: &'a str,
    job_id: &'a str,
    /// `delayed`, `ready` (removed) or `running` (marked).
    was: &'static str,
    entry_id: Option<String>,
    consumer: Option<String>,
}

/// Where the job is now, in a few words, for `--dry-run`.
fn place(found: &[Location]) -> &'static str {
    match found.first() {
        Some(Location::Delayed(_)) => "delayed: it would be removed",
        Some(Location::Ready(_)) => "ready: it would be removed",
        Some(Location::InFlight { .. }) => {
            "running: its worker would cancel it at its next lease renewal"
        }
        Some(Location::Dead(_)) => "dead-lettered: nothing to cancel",
        _ => "not found: nothing to cancel",
    }
}

/// Runs `millrace cancel`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let question = format!("cancel job {} of queue {:?}", a.job_id, a.queue);
    match output::confirm(a.confirm, &question)? {
        Decision::Proceed => {}
        Decision::Declined => return Ok(()),
        Decision::DryRun => {
            let found = inspect::find(&mut ctx.conn, &queue, &a.job_id).await?;
            say(ctx, &format!("job {}: {}", a.job_id, place(&found)));
            return Ok(());
        }
    }
    let mut out = Out {
        queue: &a.queue,
        job_id: &a.job_id,
        was: "",
        entry_id: None,
        consumer: None,
    };
    let line = match queue.cancel(&mut ctx.conn, &a.job_id).await? {
        Cancel::Delayed => {
            out.was = "delayed";
            format!(
                "cancelled job {}: removed from the delayed jobs of queue {:?}",
                a.job_id, a.queue
            )
        }
        Cancel::Ready { entry_id } => {
            out.was = "ready";
            out.entry_id = Some(entry_id);
            format!(
                "cancelled job {}: removed from queue {:?} before any worker took it",
                a.job_id, a.queue
            )
        }
        Cancel::Running { entry_id, consumer } => {
            let line = format!(
                "cancel requested for running job {}: {consumer} cancels it at its next lease renewal and records it as cancelled",
                a.job_id
            );
            out.was = "running";
            out.entry_id = Some(entry_id);
            out.consumer = Some(consumer);
            line
        }
        Cancel::Dead => bail!(
            "job {} of queue {:?} is already finished (dead-lettered): nothing to cancel",
            a.job_id,
            a.queue
        ),
        Cancel::Finished(f) => bail!(
            "job {} of queue {:?} is already finished ({} at {}): nothing to cancel",
            a.job_id,
            a.queue,
            f.outcome_text,
            output::at(f.finished_at_ms)
        ),
        _ => bail!(
            "no job {} in queue {:?} to cancel: it finished before the history kept it, or was never there",
            a.job_id,
            a.queue
        ),
    };
    if ctx.json {
        return output::print_json(&out);
    }
    println!("{line}");
    Ok(())
}
