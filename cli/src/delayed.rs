//! `millrace delayed list|run-now <queue>`: jobs scheduled for later and
//! jobs waiting for their next attempt.

use anyhow::bail;
use comfy_table::{Cell, Color};
use millrace_core::inspect::{self, DelayedJob};
use millrace_core::{Queue, admin};
use serde::Serialize;

use crate::Ctx;
use crate::dead::say;
use crate::output::{self, Confirm, Decision, cell};
use crate::partitions::{self, Held};

/// `millrace delayed ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Delayed jobs, soonest first.
    List(ListArgs),
    /// Make delayed jobs ready now: some by job id, or every one that
    /// matches the filters with --all.
    RunNow(RunNowArgs),
}

/// Which delayed jobs.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only jobs with this name.
    #[arg(long)]
    job: Option<String>,
    /// Only jobs waiting for a retry.
    #[arg(long, conflicts_with = "scheduled")]
    retrying: bool,
    /// Only jobs scheduled for later that never failed.
    #[arg(long)]
    scheduled: bool,
}

impl FilterArgs {
    fn keeps(&self, d: &DelayedJob) -> bool {
        if self
            .job
            .as_deref()
            .is_some_and(|j| d.get("name") != Some(j))
        {
            return false;
        }
        !(self.retrying && !d.is_retry() || self.scheduled && d.is_retry())
    }
}

/// Flags of `millrace delayed list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The queue.
    queue: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Show at most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

/// Flags of `millrace delayed run-now`.
#[derive(Debug, clap::Args)]
pub struct RunNowArgs {
    /// The queue.
    queue: String,
    /// Job ids to run now.
    #[arg(conflicts_with = "all")]
    ids: Vec<String>,
    /// Every delayed job that matches the filters.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    confirm: Confirm,
}

/// One delayed job in `--json` output.
#[derive(Debug, Serialize)]
pub struct DelayedRow {
    job_id: String,
    job: Option<String>,
    state: &'static str,
    attempt: Option<u32>,
    due_at_ms: u64,
    error: Option<String>,
    /// The lane: high, default or low.
    lane: &'static str,
}

impl From<&DelayedJob> for DelayedRow {
    fn from(d: &DelayedJob) -> Self {
        Self {
            job_id: d.id.clone(),
            job: d.get("name").map(str::to_owned),
            state: if d.is_retry() {
                "retrying"
            } else {
                "scheduled"
            },
            attempt: d.get("attempt").and_then(|a| a.parse().ok()),
            due_at_ms: d.due_ms,
            error: d.get("error").map(str::to_owned),
            lane: d.lane.as_str(),
        }
    }
}

/// Runs `millrace delayed ...`.
pub async fn run(ctx: &mut Ctx, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List(a) => list(ctx, a).await,
        Command::RunNow(a) => run_now(ctx, a).await,
    }
}

/// Up to `limit` delayed jobs that pass `filter`, over every lane the
/// queue uses, soonest first, read in pages.
async fn matching(
    ctx: &mut Ctx,
    queue: &Queue,
    filter: &FilterArgs,
    limit: usize,
) -> anyhow::Result<Vec<DelayedJob>> {
    let mut out = Vec::new();
    for lane in queue.lanes(&mut ctx.conn).await? {
        let lane_q = queue.lane(lane);
        let mut found = 0;
        let mut offset = 0;
        while found < limit {
            let page = inspect::delayed_page(&mut ctx.conn, &lane_q, offset, inspect::PAGE).await?;
            if page.is_empty() {
                break;
            }
            offset += page.len();
            let before = out.len();
            out.extend(page.into_iter().filter(|d| filter.keeps(d)));
            found += out.len() - before;
        }
    }
    out.sort_by_key(|d| d.due_ms);
    out.truncate(limit);
    Ok(out)
}

fn table(rows: &[DelayedJob], now: u64, lanes: bool) -> comfy_table::Table {
    let mut headers = vec!["JOB ID"];
    if lanes {
        headers.push("LANE");
    }
    headers.extend(["JOB", "STATE", "ATTEMPT", "RUNS IN", "ERROR"]);
    let mut t = output::table(&headers);
    for d in rows {
        let r = DelayedRow::from(d);
        let runs = if r.due_at_ms > now {
            output::ms(r.due_at_ms - now)
        } else {
            "now".to_owned()
        };
        let mut row = vec![Cell::new(&r.job_id)];
        if lanes {
            row.push(Cell::new(r.lane));
        }
        row.extend([
            Cell::new(r.job.as_deref().unwrap_or("-")),
            cell(r.state, r.state == "retrying", Color::Yellow),
            Cell::new(r.attempt.map_or_else(|| "-".into(), |a| a.to_string())),
            Cell::new(runs),
            Cell::new(output::clip(r.error.as_deref().unwrap_or(""), 60)),
        ]);
        t.add_row(row);
    }
    t
}

async fn list(ctx: &mut Ctx, a: ListArgs) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let rows = matching(ctx, &queue, &a.filter, a.limit).await?;
    if ctx.json {
        let rows: Vec<DelayedRow> = rows.iter().map(DelayedRow::from).collect();
        return output::print_json(&rows);
    }
    let total = inspect::delayed_count(&mut ctx.conn, &queue).await?;
    if rows.is_empty() {
        println!(
            "no delayed jobs match in queue {:?} ({total} delayed in all)",
            a.queue
        );
        return partitions::hint(ctx, &queue, Held::Delayed).await;
    }
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    let lanes = ctx.has_lanes(&queue).await?;
    output::print_table(&table(&rows, now, lanes));
    if (rows.len() as u64) < total {
        println!("({} shown of {total} delayed)", rows.len());
    }
    partitions::hint(ctx, &queue, Held::Delayed).await
}

#[derive(Debug, Serialize)]
struct RunNowResult<'a> {
    queue: &'a str,
    action: &'a str,
    matched: u64,
    done: u64,
    dry_run: bool,
    aborted: bool,
}

async fn run_now(ctx: &mut Ctx, a: RunNowArgs) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    queue.declare(&mut ctx.conn).await?;
    let mut r = RunNowResult {
        queue: &a.queue,
        action: "run-now",
        matched: 0,
        done: 0,
        dry_run: a.confirm.dry_run,
        aborted: false,
    };
    if !a.ids.is_empty() {
        let mut missing = Vec::new();
        for id in &a.ids {
            if inspect::delayed_job(&mut ctx.conn, &queue, id)
                .await?
                .is_none()
            {
                missing.push(id.as_str());
            }
        }
        if !missing.is_empty() {
            bail!(
                "no delayed job {} in queue {:?}",
                missing.join(", "),
                a.queue
            );
        }
        r.matched = a.ids.len() as u64;
        if !a.confirm.dry_run {
            r.done = admin::run_now(&mut ctx.conn, &queue, &a.ids).await?;
        }
        return finish(ctx, &r);
    }
    if !a.all {
        bail!(
            "say which delayed jobs to run now: job ids, or --all (with --job, --retrying or --scheduled to narrow it)"
        );
    }
    // Count (bounded memory), then move in batches, lane by lane.
    let lanes = queue.lanes(&mut ctx.conn).await?;
    let mut matched = Vec::with_capacity(lanes.len());
    let mut sample = Vec::new();
    for lane in &lanes {
        let lane_q = queue.lane(*lane);
        let mut offset = 0;
        let mut n = 0;
        loop {
            let page = inspect::delayed_page(&mut ctx.conn, &lane_q, offset, inspect::PAGE).await?;
            if page.is_empty() {
                break;
            }
            offset += page.len();
            for d in page.into_iter().filter(|d| a.filter.keeps(d)) {
                n += 1;
                if sample.len() < 5 {
                    sample.push(d);
                }
            }
        }
        r.matched += n;
        matched.push((lane_q, n));
    }
    if r.matched == 0 {
        say(
            ctx,
            &format!("no delayed jobs match in queue {:?}", a.queue),
        );
        return finish(ctx, &r);
    }
    say(
        ctx,
        &format!(
            "will run {} of queue {:?} now (moved to the ready stream); first ones:",
            output::plural(r.matched, "delayed job", "delayed jobs"),
            a.queue
        ),
    );
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    for line in table(&sample, now, lanes.len() > 1).lines() {
        say(ctx, &format!("  {}", line.trim_end()));
    }
    let question = format!(
        "run {} now",
        output::plural(r.matched, "delayed job", "delayed jobs")
    );
    match output::confirm(a.confirm, &question)? {
        Decision::Proceed => {}
        Decision::DryRun => return finish(ctx, &r),
        Decision::Declined => {
            r.aborted = true;
            return finish(ctx, &r);
        }
    }
    let bar = output::progress(r.matched, "moved");
    for (lane_q, matched) in &matched {
        r.done += move_lane(ctx, lane_q, &a.filter, *matched, &bar).await?;
    }
    bar.finish_and_clear();
    finish(ctx, &r)
}

/// Moves up to `matched` delayed jobs of the lane of lane view `lane_q`
/// that pass `filter` to the ready stream, in batches; returns how many
/// were moved.
async fn move_lane(
    ctx: &mut Ctx,
    lane_q: &Queue,
    filter: &FilterArgs,
    matched: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    // Moved jobs leave the set, so the offset counts only the jobs skipped.
    let mut done = 0;
    let mut skipped = 0;
    let mut seen = 0;
    while seen < matched {
        let page = inspect::delayed_page(&mut ctx.conn, lane_q, skipped, admin::BATCH).await?;
        if page.is_empty() {
            break;
        }
        let mut ids = Vec::new();
        for d in page {
            if filter.keeps(&d) && seen < matched {
                seen += 1;
                ids.push(d.id);
            } else {
                skipped += 1;
            }
        }
        done += admin::run_now(&mut ctx.conn, lane_q, &ids).await?;
        bar.inc(ids.len() as u64);
    }
    Ok(done)
}

fn finish(ctx: &Ctx, r: &RunNowResult<'_>) -> anyhow::Result<()> {
    if ctx.json {
        return output::print_json(r);
    }
    if r.dry_run {
        if r.matched > 0 {
            println!(
                "would run {} now",
                output::plural(r.matched, "delayed job", "delayed jobs")
            );
        }
    } else if !r.aborted && r.matched > 0 {
        println!(
            "moved {} of queue {:?} to the ready stream",
            output::plural(r.done, "delayed job", "delayed jobs"),
            r.queue
        );
    }
    Ok(())
}
