//! `millrace history <queue>`: the newest finished jobs (succeeded, dead,
//! cancelled) from the queue's history stream, newest first.

use millrace_core::history::{self, Outcome};
use millrace_core::inspect;
use serde::Serialize;

use crate::Ctx;
use crate::output;

/// Flags of `millrace history`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
The history is written by the workers (one entry per finished job, in the
same script as the outcome) and bounded by their --history-max-len and
--history-max-age (10,000 entries / 24h by default); with --no-history it
stays empty. `millrace show QUEUE JOB-ID` finds one job in it.")]
pub struct Args {
    /// The queue.
    queue: String,
    /// Most jobs listed.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: u64,
    /// Only jobs that finished this way.
    #[arg(long, value_parser = ["succeeded", "dead", "cancelled"])]
    outcome: Option<String>,
}

/// One finished job in `--json` output.
#[derive(Debug, Serialize)]
struct Row {
    job_id: String,
    name: String,
    outcome: String,
    finished_at_ms: u64,
    attempts: Option<u32>,
    took_ms: Option<u64>,
    consumer: String,
    error: Option<String>,
}

/// Runs `millrace history`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let outcome = a.outcome.as_deref().and_then(Outcome::parse);
    let limit = usize::try_from(a.limit).unwrap_or(usize::MAX);
    let rows: Vec<Row> = history::recent(&mut ctx.conn, &queue, limit, outcome)
        .await?
        .into_iter()
        .map(|f| Row {
            job_id: f.job_id,
            name: f.name,
            outcome: f.outcome_text,
            finished_at_ms: f.finished_at_ms,
            attempts: f.attempts,
            took_ms: f.took_ms,
            consumer: f.consumer,
            error: f.error,
        })
        .collect();
    if ctx.json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        println!(
            "no finished jobs in the history of queue {:?} (the workers keep none with --no-history)",
            a.queue
        );
        return Ok(());
    }
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    let mut t = output::table(&[
        "FINISHED", "OUTCOME", "JOB", "NAME", "ATTEMPTS", "TOOK", "CONSUMER", "ERROR",
    ]);
    for r in &rows {
        t.add_row(vec![
            format!("{} ago", output::ms(now.saturating_sub(r.finished_at_ms))),
            r.outcome.clone(),
            r.job_id.clone(),
            r.name.clone(),
            r.attempts.map_or_else(|| "-".into(), |n| n.to_string()),
            output::opt_ms(r.took_ms),
            r.consumer.clone(),
            output::clip(r.error.as_deref().unwrap_or(""), 60),
        ]);
    }
    output::print_table(&t);
    Ok(())
}
