//! `millrace ready list <queue>`: jobs waiting to run, i.e. entries in the
//! stream that no worker has claimed yet, oldest first (lane by lane, high
//! first, in a queue with lanes).

use comfy_table::{Cell, Color};
use millrace_core::inspect::{self, RawEntry};
use serde::Serialize;

use crate::Ctx;
use crate::output::{self, cell};

/// `millrace ready ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Jobs waiting to run (not yet claimed by a worker), oldest first
    /// (lane by lane, high first, in a queue with lanes).
    List(ListArgs),
}

/// Flags of `millrace ready list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The queue.
    queue: String,
    /// Only jobs with this name (reads at most 100,000 entries looking for
    /// them).
    #[arg(long)]
    job: Option<String>,
    /// Show at most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

/// One ready entry in `--json` output.
#[derive(Debug, Serialize)]
pub struct ReadyRow {
    entry_id: String,
    job_id: Option<String>,
    job: Option<String>,
    attempt: Option<u32>,
    /// How long it has waited since it became ready (its entry id's time).
    waiting_ms: u64,
    /// The lane: high, default or low.
    lane: &'static str,
}

impl ReadyRow {
    fn new(e: &RawEntry, now_ms: u64) -> Self {
        let get = |k: &str| e.get(k).map(str::to_owned);
        Self {
            entry_id: e.id.clone(),
            job_id: get("id"),
            job: get("name"),
            attempt: e.get("attempt").and_then(|a| a.parse().ok()),
            waiting_ms: now_ms.saturating_sub(e.added_ms()),
            lane: e.lane.as_str(),
        }
    }
}

/// Runs `millrace ready ...`.
pub async fn run(ctx: &mut Ctx, cmd: Command) -> anyhow::Result<()> {
    let Command::List(a) = cmd;
    let queue = ctx.queue(&a.queue).await?;
    let page = inspect::ready(&mut ctx.conn, &queue, a.job.as_deref(), a.limit).await?;
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    let rows: Vec<ReadyRow> = page.entries.iter().map(|e| ReadyRow::new(e, now)).collect();
    if ctx.json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        println!(
            "no ready jobs match in queue {:?} ({} ready in all)",
            a.queue, page.total
        );
    } else {
        let lanes = ctx.has_lanes(&queue).await?;
        let mut headers = vec!["ENTRY"];
        if lanes {
            headers.push("LANE");
        }
        headers.extend(["JOB ID", "JOB", "ATTEMPT", "WAITING"]);
        let mut t = output::table(&headers);
        for r in &rows {
            let mut row = vec![Cell::new(&r.entry_id)];
            if lanes {
                row.push(Cell::new(r.lane));
            }
            row.extend([
                Cell::new(r.job_id.as_deref().unwrap_or("-")),
                Cell::new(r.job.as_deref().unwrap_or("-")),
                Cell::new(r.attempt.map_or_else(|| "-".into(), |a| a.to_string())),
                cell(
                    output::ms(r.waiting_ms),
                    r.waiting_ms > 60_000,
                    Color::Yellow,
                ),
            ]);
            t.add_row(row);
        }
        output::print_table(&t);
        if (rows.len() as u64) < page.total {
            println!("({} shown of {} ready)", rows.len(), page.total);
        }
    }
    if page.cut {
        println!(
            "(stopped after reading {} entries looking for {:?} jobs)",
            page.scanned,
            a.job.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}
