//! `millrace requeue <queue> --min-idle 10m`: make stuck pending entries
//! runnable again now. Each batch is one script that re-checks every entry
//! (still pending, still idle past the minimum, still the consumer's) before
//! it re-adds a copy and acknowledges the old one, so a live worker that
//! renewed its lease meanwhile keeps its job.

use std::time::Duration;

use comfy_table::Cell;
use millrace_core::admin;
use millrace_core::inspect::{self, PendingEntry, PendingFilter};
use serde::Serialize;

use crate::dead::say;
use crate::output::{self, Confirm, Decision};
use crate::{Ctx, duration};

/// Flags of `millrace requeue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue.
    queue: String,
    /// Only entries idle at least this long (their lease long expired),
    /// e.g. 10m.
    #[arg(long, value_parser = duration)]
    min_idle: Duration,
    /// Only entries held by this consumer.
    #[arg(long)]
    consumer: Option<String>,
    /// Only jobs with this name.
    #[arg(long)]
    job: Option<String>,
    #[command(flatten)]
    confirm: Confirm,
}

#[derive(Debug, Serialize)]
struct Result<'a> {
    queue: &'a str,
    action: &'a str,
    matched: u64,
    done: u64,
    dropped: u64,
    skipped: u64,
    dry_run: bool,
    aborted: bool,
}

fn sample_table(rows: &[PendingEntry]) -> comfy_table::Table {
    let mut t = output::table(&["ENTRY", "JOB ID", "JOB", "CONSUMER", "IDLE", "DELIVERIES"]);
    for p in rows {
        let get = |k: &str| {
            p.entry
                .as_ref()
                .and_then(|e| e.get(k))
                .unwrap_or("-")
                .to_owned()
        };
        t.add_row(vec![
            Cell::new(&p.entry_id),
            Cell::new(if p.entry.is_some() {
                get("id")
            } else {
                "(deleted)".into()
            }),
            Cell::new(get("name")),
            Cell::new(&p.consumer),
            Cell::new(output::ms(p.idle_ms)),
            Cell::new(p.deliveries),
        ]);
    }
    t
}

/// Runs `millrace requeue`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let filter = PendingFilter::new(a.consumer.clone(), a.min_idle, a.job.clone());
    let mut r = Result {
        queue: &a.queue,
        action: "requeue",
        matched: 0,
        done: 0,
        dropped: 0,
        skipped: 0,
        dry_run: a.confirm.dry_run,
        aborted: false,
    };
    // Count (bounded: a count, the last id and a small sample), lane by
    // lane: each lane's stream has its own pending entries.
    let mut lasts = Vec::new();
    let mut sample = Vec::new();
    for lane in queue.lanes(&mut ctx.conn).await? {
        let lane_q = queue.lane(lane);
        let mut cursor = "-".to_owned();
        let mut last = None;
        loop {
            let page =
                inspect::pending_page(&mut ctx.conn, &lane_q, &filter, &cursor, inspect::PAGE)
                    .await?;
            let Some(tail) = page.last() else { break };
            cursor = format!("({}", tail.entry_id);
            let full = page.len() == inspect::PAGE;
            for p in page.into_iter().filter(|p| keeps(&filter, p)) {
                r.matched += 1;
                last = Some(p.entry_id.clone());
                if sample.len() < 5 {
                    sample.push(p);
                }
            }
            if !full {
                break;
            }
        }
        if let Some(last) = last {
            lasts.push((lane_q, last));
        }
    }
    if lasts.is_empty() {
        say(
            ctx,
            &format!(
                "no pending entries in queue {:?} idle at least {}{}",
                a.queue,
                output::ms(millrace_core::queue::duration_ms(a.min_idle)),
                a.consumer
                    .as_deref()
                    .map_or_else(String::new, |c| format!(" held by {c}"))
            ),
        );
        return finish(ctx, &r);
    }
    say(
        ctx,
        &format!(
            "will requeue {} of queue {:?} idle at least {}{}: each goes back to the ready stream now (attempt unchanged); first ones:",
            output::plural(r.matched, "pending entry", "pending entries"),
            a.queue,
            output::ms(millrace_core::queue::duration_ms(a.min_idle)),
            a.consumer
                .as_deref()
                .map_or_else(String::new, |c| format!(" held by {c}")),
        ),
    );
    for line in sample_table(&sample).lines() {
        say(ctx, &format!("  {}", line.trim_end()));
    }
    let question = format!(
        "requeue {}",
        output::plural(r.matched, "pending entry", "pending entries")
    );
    match output::confirm(a.confirm, &question)? {
        Decision::Proceed => {}
        Decision::DryRun => return finish(ctx, &r),
        Decision::Declined => {
            r.aborted = true;
            return finish(ctx, &r);
        }
    }
    let bar = output::progress(r.matched, "requeued");
    for (lane_q, last) in &lasts {
        let done = requeue_lane(ctx, lane_q, &filter, last, &a, &bar).await?;
        r.done += done.requeued;
        r.dropped += done.dropped;
        r.skipped += done.skipped;
    }
    bar.finish_and_clear();
    finish(ctx, &r)
}

/// Requeues the matching pending entries of the lane of lane view
/// `lane_q` up to entry `last`, in batches.
async fn requeue_lane(
    ctx: &mut Ctx,
    lane_q: &millrace_core::Queue,
    filter: &PendingFilter,
    last: &str,
    a: &Args,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<admin::Requeued> {
    let mut total = admin::Requeued::default();
    let mut cursor = "-".to_owned();
    loop {
        let page =
            inspect::pending_page(&mut ctx.conn, lane_q, filter, &cursor, admin::BATCH).await?;
        let Some(tail) = page.last() else { break };
        cursor = format!("({}", tail.entry_id);
        let full = page.len() == admin::BATCH;
        let mut ids = Vec::with_capacity(page.len());
        let mut past_last = false;
        for p in page {
            if inspect::compare_entry_ids(&p.entry_id, last).is_gt() {
                past_last = true;
                break;
            }
            if keeps(filter, &p) {
                ids.push(p.entry_id);
            }
        }
        let done = admin::requeue(
            &mut ctx.conn,
            lane_q,
            &ids,
            a.min_idle,
            a.consumer.as_deref(),
        )
        .await?;
        total.requeued += done.requeued;
        total.dropped += done.dropped;
        total.skipped += done.skipped;
        bar.inc(ids.len() as u64);
        if past_last || !full {
            break;
        }
    }
    Ok(total)
}

/// The job-name filter (consumer and idle are applied by XPENDING); entries
/// whose fields are gone match only when no job name is asked for.
fn keeps(filter: &PendingFilter, p: &PendingEntry) -> bool {
    match &filter.job {
        None => true,
        Some(job) => p.entry.as_ref().and_then(|e| e.get("name")) == Some(job.as_str()),
    }
}

fn finish(ctx: &Ctx, r: &Result<'_>) -> anyhow::Result<()> {
    if ctx.json {
        return output::print_json(r);
    }
    if !r.dry_run && !r.aborted && r.matched > 0 {
        let mut line = format!(
            "requeued {} of queue {:?}",
            output::plural(r.done, "entry", "entries"),
            r.queue
        );
        if r.dropped > 0 {
            line.push_str(&format!(
                "; dropped {} whose entry was already deleted",
                r.dropped
            ));
        }
        if r.skipped > 0 {
            line.push_str(&format!(
                "; left {} alone (finished, renewed by a live worker, or moved meanwhile)",
                r.skipped
            ));
        }
        println!("{line}");
    }
    Ok(())
}
