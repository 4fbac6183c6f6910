//! `millrace pending <queue>`: the in-flight entries, who holds them and
//! for how long.

use std::time::Duration;

use comfy_table::{Cell, Color};
use millrace_core::inspect::{self, PendingEntry, PendingFilter};
use serde::Serialize;

use crate::output::{self, cell};
use crate::partitions::{self, Held};
use crate::{Ctx, duration};

/// Flags of `millrace pending`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue.
    queue: String,
    /// Only entries held by this consumer.
    #[arg(long)]
    consumer: Option<String>,
    /// Only entries idle at least this long (e.g. 5m).
    #[arg(long, value_parser = duration, default_value = "0s")]
    min_idle: Duration,
    /// Only jobs with this name.
    #[arg(long)]
    job: Option<String>,
    /// Show at most this many entries.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// One pending entry in `--json` output.
#[derive(Debug, Serialize)]
pub struct PendingRow {
    entry_id: String,
    job_id: Option<String>,
    job: Option<String>,
    attempt: Option<u32>,
    consumer: String,
    idle_ms: u64,
    deliveries: u64,
    deleted: bool,
    /// The lane: high, default or low.
    lane: &'static str,
}

impl From<&PendingEntry> for PendingRow {
    fn from(p: &PendingEntry) -> Self {
        let get = |k: &str| p.entry.as_ref().and_then(|e| e.get(k)).map(str::to_owned);
        Self {
            entry_id: p.entry_id.clone(),
            job_id: get("id"),
            job: get("name"),
            attempt: get("attempt").and_then(|a| a.parse().ok()),
            consumer: p.consumer.clone(),
            idle_ms: p.idle_ms,
            deliveries: p.deliveries,
            deleted: p.entry.is_none(),
            lane: p.lane.as_str(),
        }
    }
}

/// Runs `millrace pending`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let filter = PendingFilter::new(a.consumer, a.min_idle, a.job);
    let rows = inspect::pending(&mut ctx.conn, &queue, &filter, a.limit).await?;
    if ctx.json {
        let rows: Vec<PendingRow> = rows.iter().map(PendingRow::from).collect();
        return output::print_json(&rows);
    }
    let total = inspect::pending_count(&mut ctx.conn, &queue).await?;
    if rows.is_empty() {
        println!(
            "no pending entries match in queue {:?} ({} pending in all)",
            a.queue, total
        );
        return partitions::hint(ctx, &queue, Held::Pending).await;
    }
    let lanes = ctx.has_lanes(&queue).await?;
    let mut headers = vec!["ENTRY"];
    if lanes {
        headers.push("LANE");
    }
    headers.extend(["JOB ID", "JOB", "ATTEMPT", "CONSUMER", "IDLE", "DELIVERIES"]);
    let mut t = output::table(&headers);
    for p in &rows {
        let r = PendingRow::from(p);
        let mut row = vec![Cell::new(&r.entry_id)];
        if lanes {
            row.push(Cell::new(r.lane));
        }
        row.extend([
            Cell::new(r.job_id.as_deref().unwrap_or("(deleted)")),
            Cell::new(r.job.as_deref().unwrap_or("-")),
            Cell::new(r.attempt.map_or_else(|| "-".into(), |a| a.to_string())),
            Cell::new(&r.consumer),
            cell(output::ms(r.idle_ms), r.idle_ms > 60_000, Color::Yellow),
            cell(r.deliveries, r.deliveries > 1, Color::Yellow),
        ]);
        t.add_row(row);
    }
    output::print_table(&t);
    if (rows.len() as u64) < total {
        println!("({} shown of {} pending)", rows.len(), total);
    }
    partitions::hint(ctx, &queue, Held::Pending).await
}
