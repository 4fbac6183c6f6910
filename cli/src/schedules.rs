//! `millrace schedules`: the periodic jobs workers registered (definition,
//! last and next fire, paused), and `pause|resume NAME` to stop and start
//! one schedule's fires.

use anyhow::bail;
use comfy_table::{Cell, Color};
use millrace_core::Queue;
use millrace_core::inspect;
use millrace_core::schedule::store::{self, ScheduleInfo};
use serde::Serialize;

use crate::Ctx;
use crate::output::{self, cell};

/// Flags of `millrace schedules`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Only this queue's schedules.
    #[arg(long)]
    queue: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `millrace schedules pause|resume`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Pause a schedule: its fires are skipped (not caught up on resume)
    /// until it is resumed. Workers see it at the next fire.
    Pause(NameArgs),
    /// Resume a paused schedule: it fires again from its next fire time.
    Resume(NameArgs),
}

/// Which schedule.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The schedule's name.
    name: String,
    /// Its queue (needed only when queues share the name).
    #[arg(long)]
    queue: Option<String>,
}

/// One schedule in `--json` output.
#[derive(Debug, Serialize)]
pub struct ScheduleRow {
    name: String,
    queue: String,
    cron: Option<String>,
    tz: Option<String>,
    job: Option<String>,
    payload: Option<String>,
    missed: Option<String>,
    grace_ms: Option<u64>,
    /// The latest fire time enqueued (unix ms).
    last_fire_ms: Option<u64>,
    /// The next fire time (unix ms).
    next_fire_ms: Option<u64>,
    paused: bool,
    paused_since_ms: Option<u64>,
}

impl ScheduleRow {
    fn new(queue: &str, s: &ScheduleInfo, now: u64) -> Self {
        let d = s.def.as_ref();
        Self {
            name: s.name.clone(),
            queue: queue.to_owned(),
            cron: d.map(|d| d.cron.clone()),
            tz: d.map(|d| d.tz.clone()),
            job: d.map(|d| d.job.clone()),
            payload: d.map(|d| d.payload.clone()),
            missed: d.map(|d| d.missed.to_string()),
            grace_ms: d.map(|d| d.grace_ms),
            last_fire_ms: s.fired,
            next_fire_ms: s.next_fire(now),
            paused: s.paused_since.is_some(),
            paused_since_ms: s.paused_since,
        }
    }
}

/// Runs `millrace schedules ...`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    match a.command {
        None => list(ctx, a.queue.as_deref()).await,
        Some(Command::Pause(n)) => pause(ctx, n, true).await,
        Some(Command::Resume(n)) => pause(ctx, n, false).await,
    }
}

/// The queues to look in: the one named, or every known queue.
async fn queues(ctx: &mut Ctx, only: Option<&str>) -> anyhow::Result<Vec<Queue>> {
    if let Some(q) = only {
        return Ok(vec![ctx.queue(q).await?]);
    }
    let names = inspect::known_queues(&mut ctx.conn, &ctx.prefix).await?;
    names
        .iter()
        .map(|n| Ok(Queue::with_prefix(&ctx.prefix, n)?))
        .collect()
}

async fn list(ctx: &mut Ctx, only: Option<&str>) -> anyhow::Result<()> {
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    let mut rows = Vec::new();
    for q in queues(ctx, only).await? {
        for s in store::list(&mut ctx.conn, &q).await? {
            rows.push(ScheduleRow::new(q.name(), &s, now));
        }
    }
    if ctx.json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        println!("no schedules: workers register theirs when they start");
        return Ok(());
    }
    let mut t = output::table(&[
        "NAME",
        "QUEUE",
        "CRON",
        "TZ",
        "JOB",
        "MISSED",
        "LAST FIRE",
        "NEXT FIRE",
        "PAUSED",
    ]);
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    for r in &rows {
        let last = r.last_fire_ms.map_or_else(
            || "-".to_owned(),
            |ms| format!("{} ago", output::ms(now.saturating_sub(ms))),
        );
        let next = r.next_fire_ms.map_or_else(
            || "-".to_owned(),
            |ms| format!("in {}", output::ms(ms.saturating_sub(now))),
        );
        let paused = r.paused_since_ms.map_or_else(
            || "no".to_owned(),
            |since| format!("yes, {} ago", output::ms(now.saturating_sub(since))),
        );
        t.add_row(vec![
            Cell::new(&r.name),
            Cell::new(&r.queue),
            Cell::new(dash(&r.cron)),
            Cell::new(dash(&r.tz)),
            Cell::new(dash(&r.job)),
            Cell::new(dash(&r.missed)),
            Cell::new(last),
            Cell::new(next),
            cell(paused, r.paused, Color::Yellow),
        ]);
    }
    output::print_table(&t);
    Ok(())
}

#[derive(Debug, Serialize)]
struct PauseOut<'a> {
    schedule: &'a str,
    queue: &'a str,
    paused: bool,
    changed: bool,
}

async fn pause(ctx: &mut Ctx, a: NameArgs, paused: bool) -> anyhow::Result<()> {
    let mut found: Vec<(Queue, bool)> = Vec::new();
    let mut known: Vec<String> = Vec::new();
    for q in queues(ctx, a.queue.as_deref()).await? {
        for s in store::list(&mut ctx.conn, &q).await? {
            if s.name == a.name && s.def.is_some() {
                found.push((q.clone(), s.paused_since.is_some()));
            } else {
                known.push(s.name);
            }
        }
    }
    let (queue, was) = match found.as_slice() {
        [one] => one.clone(),
        [] if known.is_empty() => {
            bail!("unknown schedule {:?}: no schedules are registered", a.name)
        }
        [] => {
            known.sort();
            known.dedup();
            bail!(
                "unknown schedule {:?} (known: {})",
                a.name,
                known.join(", ")
            )
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(q, _)| q.name()).collect();
            bail!(
                "schedule {:?} is in queues {}: name one with --queue",
                a.name,
                names.join(", ")
            )
        }
    };
    if !store::set_paused(&mut ctx.conn, &queue, &a.name, paused).await? {
        bail!("unknown schedule {:?} in queue {:?}", a.name, queue.name());
    }
    let out = PauseOut {
        schedule: &a.name,
        queue: queue.name(),
        paused,
        changed: was != paused,
    };
    if ctx.json {
        return output::print_json(&out);
    }
    match (paused, out.changed) {
        (true, true) => println!(
            "paused schedule {:?} in queue {:?}: its fires are skipped until resumed",
            a.name,
            queue.name()
        ),
        (true, false) => println!("schedule {:?} was already paused", a.name),
        (false, true) => println!(
            "resumed schedule {:?} in queue {:?}: it fires again from its next fire time",
            a.name,
            queue.name()
        ),
        (false, false) => println!("schedule {:?} was not paused", a.name),
    }
    Ok(())
}
