//! `millrace dead list|show|replay|purge <queue>`: the dead-letter stream.
//! Replay and purge of many entries scan the stream by id ranges in pages,
//! act in batches of [`admin::BATCH`] (one atomic script or XDEL each) and
//! stop at the last entry they counted, so a re-run after an interruption
//! neither duplicates nor touches entries that died meanwhile.

use std::time::SystemTime;

use anyhow::bail;
use comfy_table::Cell;
use millrace_core::Queue;
use millrace_core::admin::{self, DeadAction as Action};
use millrace_core::inspect::{self, DeadFilter, DeadScan, RawEntry};
use serde::Serialize;

use crate::output::{self, Confirm, Decision};
use crate::partitions::{self, Held};
use crate::{Ctx, show};

/// `millrace dead ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Dead-lettered jobs, newest first.
    List(ListArgs),
    /// One dead job by entry id or job id.
    Show(ShowArgs),
    /// Send dead jobs back to the ready stream with attempts reset: one
    /// (by id), a filtered set, or --all.
    Replay(BulkArgs),
    /// Delete dead jobs for good: one (by id), a filtered set, or --all.
    Purge(BulkArgs),
}

/// Filters on dead jobs.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only jobs with this name.
    #[arg(long)]
    job: Option<String>,
    /// Only jobs whose error contains this text (case-insensitive).
    #[arg(long)]
    error_contains: Option<String>,
    /// Only jobs dead-lettered since this long ago (e.g. 1h) or since this
    /// time (e.g. 2026-11-21T09:00:00Z).
    #[arg(long, value_parser = since)]
    since: Option<SystemTime>,
}

impl FilterArgs {
    fn filter(&self) -> DeadFilter {
        DeadFilter::new(
            self.job.clone(),
            self.error_contains.clone(),
            self.since.map(millrace_core::queue::unix_ms),
        )
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(j) = &self.job {
            parts.push(format!("job {j:?}"));
        }
        if let Some(e) = &self.error_contains {
            parts.push(format!("error containing {e:?}"));
        }
        if let Some(s) = self.since {
            parts.push(format!(
                "dead since {}",
                humantime::format_rfc3339_seconds(s)
            ));
        }
        if parts.is_empty() {
            "all".to_owned()
        } else {
            parts.join(", ")
        }
    }

    fn is_empty(&self) -> bool {
        self.job.is_none() && self.error_contains.is_none() && self.since.is_none()
    }
}

fn since(s: &str) -> Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(SystemTime::now()
            .checked_sub(d)
            .unwrap_or(SystemTime::UNIX_EPOCH));
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|_| "use a duration (e.g. 1h) or a time (e.g. 2026-11-21T09:00:00Z)".to_owned())
}

/// Flags of `millrace dead list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The queue.
    queue: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Show at most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Show each error in full (wrapped) instead of cut to 60 characters;
    /// `millrace dead show <queue> <entry>` shows one job's full error too.
    #[arg(long)]
    wide: bool,
}

/// Flags of `millrace dead show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The queue.
    queue: String,
    /// A dead entry id or a job id.
    id: String,
}

/// Flags of `millrace dead replay|purge`.
#[derive(Debug, clap::Args)]
pub struct BulkArgs {
    /// The queue.
    queue: String,
    /// One dead job: its entry id or job id.
    #[arg(conflicts_with_all = ["all", "job", "error_contains", "since"])]
    id: Option<String>,
    /// Every dead job of the queue.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    confirm: Confirm,
}

/// One dead job in `--json` output.
#[derive(Debug, Serialize)]
pub struct DeadRow {
    entry_id: String,
    job_id: Option<String>,
    job: Option<String>,
    attempt: Option<u32>,
    error: Option<String>,
    dead_at_ms: u64,
    original_entry_id: Option<String>,
    /// The lane a replay puts it in: high, default or low.
    lane: &'static str,
}

impl From<&RawEntry> for DeadRow {
    fn from(e: &RawEntry) -> Self {
        let get = |k: &str| e.get(k).map(str::to_owned);
        Self {
            entry_id: e.id.clone(),
            job_id: get("id"),
            job: get("name"),
            attempt: get("attempt").and_then(|a| a.parse().ok()),
            error: get("error"),
            dead_at_ms: get("dead_at")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| e.added_ms()),
            original_entry_id: get("entry"),
            lane: e.lane.as_str(),
        }
    }
}

/// Result of replay or purge, in `--json` output.
#[derive(Debug, Serialize)]
struct BulkResult<'a> {
    queue: &'a str,
    action: &'a str,
    matched: u64,
    done: u64,
    dry_run: bool,
    aborted: bool,
}

/// Runs `millrace dead ...`.
pub async fn run(ctx: &mut Ctx, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List(a) => list(ctx, a).await,
        Command::Show(a) => show_one(ctx, a).await,
        Command::Replay(a) => bulk(ctx, a, Action::Replay).await,
        Command::Purge(a) => bulk(ctx, a, Action::Purge).await,
    }
}

/// Errors are cut to this many characters in tables unless `--wide`.
const ERROR_WIDTH: usize = 60;

fn table(rows: &[RawEntry], now: u64, wide: bool) -> comfy_table::Table {
    let mut t = output::table(&["ENTRY", "JOB ID", "JOB", "ATTEMPT", "DIED", "ERROR"]);
    for e in rows {
        let r = DeadRow::from(e);
        t.add_row(vec![
            Cell::new(&r.entry_id),
            Cell::new(r.job_id.as_deref().unwrap_or("-")),
            Cell::new(r.job.as_deref().unwrap_or("-")),
            Cell::new(r.attempt.map_or_else(|| "-".into(), |a| a.to_string())),
            Cell::new(format!(
                "{} ago",
                output::ms(now.saturating_sub(r.dead_at_ms))
            )),
            Cell::new(if wide {
                r.error.clone().unwrap_or_default()
            } else {
                output::clip(r.error.as_deref().unwrap_or(""), ERROR_WIDTH)
            }),
        ]);
    }
    t
}

async fn list(ctx: &mut Ctx, a: ListArgs) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let rows = inspect::dead_newest(&mut ctx.conn, &queue, &a.filter.filter(), a.limit).await?;
    if ctx.json {
        let rows: Vec<DeadRow> = rows.iter().map(DeadRow::from).collect();
        return output::print_json(&rows);
    }
    let total = inspect::dead_count(&mut ctx.conn, &queue).await?;
    if rows.is_empty() {
        println!(
            "no dead jobs match in queue {:?} ({total} dead in all)",
            a.queue
        );
        return partitions::hint(ctx, &queue, Held::Dead).await;
    }
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    output::print_table(&table(&rows, now, a.wide));
    let cut = rows
        .iter()
        .filter_map(|e| DeadRow::from(e).error)
        .any(|err| err.chars().count() > ERROR_WIDTH || err.contains('\n'));
    if cut && !a.wide {
        println!(
            "errors cut to {ERROR_WIDTH} characters: --wide shows them in full, `millrace dead show {} <entry>` one job",
            a.queue
        );
    }
    if (rows.len() as u64) < total {
        println!("({} shown of {total} dead)", rows.len());
    }
    partitions::hint(ctx, &queue, Held::Dead).await
}

/// Dead entries of one job: by entry id, or every entry with that job id.
async fn find_dead(ctx: &mut Ctx, queue: &Queue, id: &str) -> anyhow::Result<Vec<RawEntry>> {
    if inspect::is_entry_id(id) {
        return Ok(inspect::entry(&mut ctx.conn, &queue.keys().dead, id)
            .await?
            .into_iter()
            .collect());
    }
    let mut scan = DeadScan::new(queue, DeadFilter::default());
    let mut out = Vec::new();
    while let Some(page) = scan.next_page(&mut ctx.conn, inspect::PAGE).await? {
        out.extend(page.into_iter().filter(|e| e.get("id") == Some(id)));
    }
    Ok(out)
}

async fn show_one(ctx: &mut Ctx, a: ShowArgs) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let found = find_dead(ctx, &queue, &a.id).await?;
    if found.is_empty() {
        bail!("no dead job {:?} in queue {:?}", a.id, a.queue);
    }
    let records: Vec<show::Found> = found
        .into_iter()
        .map(|e| show::found(inspect::Location::Dead(e)))
        .collect();
    if ctx.json {
        return output::print_json(&records);
    }
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    show::print_human(&records, now);
    Ok(())
}

/// Prints a line for people: on stdout, or stderr under `--json`.
pub fn say(ctx: &Ctx, text: &str) {
    if ctx.json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

async fn bulk(ctx: &mut Ctx, a: BulkArgs, action: Action) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    if action == Action::Replay {
        // Each job goes back to its own lane's stream.
        for lane in queue.lanes(&mut ctx.conn).await? {
            queue.lane(lane).declare(&mut ctx.conn).await?;
        }
    }
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    let mut result = BulkResult {
        queue: &a.queue,
        action: action.verb(),
        matched: 0,
        done: 0,
        dry_run: a.confirm.dry_run,
        aborted: false,
    };
    if let Some(id) = &a.id {
        let found = find_dead(ctx, &queue, id).await?;
        if found.is_empty() {
            bail!("no dead job {id:?} in queue {:?}", a.queue);
        }
        result.matched = found.len() as u64;
        let ids: Vec<String> = found.iter().map(|e| e.id.clone()).collect();
        // Replaying one job is not destructive; purging always asks.
        let decision = if action == Action::Replay && !a.confirm.dry_run {
            Decision::Proceed
        } else {
            say(
                ctx,
                &format!(
                    "will {} {} of queue {:?}:",
                    action.verb(),
                    output::plural(result.matched, "dead job", "dead jobs"),
                    a.queue
                ),
            );
            show_sample(ctx, &found, now);
            output::confirm(
                a.confirm,
                &format!(
                    "{} {}",
                    action.verb(),
                    output::plural(result.matched, "dead job", "dead jobs")
                ),
            )?
        };
        match decision {
            Decision::Proceed => result.done = action.apply(&mut ctx.conn, &queue, &ids).await?,
            Decision::DryRun => {}
            Decision::Declined => result.aborted = true,
        }
        return finish(ctx, &result, action);
    }
    if !a.all && a.filter.is_empty() {
        bail!(
            "say which dead jobs to {}: an id, a filter (--job, --error-contains, --since) or --all",
            action.verb()
        );
    }
    // Count first (bounded memory: a count, the last id and a small sample).
    let filter = a.filter.filter();
    let matches = inspect::dead_matches(&mut ctx.conn, &queue, &filter, 5).await?;
    result.matched = matches.count;
    let sample = matches.sample;
    let Some(last) = matches.last else {
        say(
            ctx,
            &format!(
                "no dead jobs match in queue {:?} ({})",
                a.queue,
                a.filter.describe()
            ),
        );
        return finish(ctx, &result, action);
    };
    let what = if action == Action::Replay {
        "back to the ready stream, attempts reset to 1"
    } else {
        "deleting them for good"
    };
    say(
        ctx,
        &format!(
            "will {} {} of queue {:?} ({}), {what}; first ones:",
            action.verb(),
            output::plural(result.matched, "dead job", "dead jobs"),
            a.queue,
            a.filter.describe(),
        ),
    );
    show_sample(ctx, &sample, now);
    let question = format!(
        "{} {}",
        action.verb(),
        output::plural(result.matched, "dead job", "dead jobs")
    );
    match output::confirm(a.confirm, &question)? {
        Decision::Proceed => {}
        Decision::DryRun => return finish(ctx, &result, action),
        Decision::Declined => {
            result.aborted = true;
            return finish(ctx, &result, action);
        }
    }
    let bar = output::progress(result.matched, action.past());
    result.done = admin::dead_bulk(&mut ctx.conn, &queue, &filter, &last, action, |n| {
        bar.inc(n);
    })
    .await?;
    bar.finish_and_clear();
    finish(ctx, &result, action)
}

fn show_sample(ctx: &Ctx, rows: &[RawEntry], now: u64) {
    let t = table(rows, now, false);
    for line in t.lines() {
        say(ctx, &format!("  {}", line.trim_end()));
    }
}

fn finish(ctx: &Ctx, r: &BulkResult<'_>, action: Action) -> anyhow::Result<()> {
    if ctx.json {
        return output::print_json(r);
    }
    if !r.dry_run && !r.aborted && r.matched > 0 {
        println!(
            "{} {} of queue {:?}",
            action.past(),
            output::plural(r.done, "dead job", "dead jobs"),
            r.queue
        );
    }
    Ok(())
}
