//! `millrace consumers <queue> [--prune]`: the group's consumers, their
//! pending entries and heartbeats, with a state from missed beats; prune
//! removes dead ones that hold nothing (a consumer's pending entries would
//! be lost with it).

use std::time::Duration;

use comfy_table::{Cell, Color};
use millrace_core::inspect::{self, ConsumerInfo};
use millrace_core::{Leave, PruneRule};
use serde::Serialize;

use crate::output::{self, cell};
use crate::{Ctx, duration};

/// Workers beat every second: a heartbeat older than this (three missed
/// beats) makes a consumer `late`.
const LATE_AFTER: Duration = Duration::from_secs(3);

/// Flags of `millrace consumers`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
STATE, from the heartbeat (workers beat every second, on Redis's clock):
  alive   last beat under 3 s ago
  late    3 s to --dead-after ago: missed beats (a stalled process, a network blip)
  dead    older than --dead-after, or never beat
IDLE is Redis's own idle time for the consumer in the group: since it was last
delivered or claimed an entry (a lease renewal counts), not since its heartbeat;
an idle worker with no work has a large IDLE and a fresh heartbeat.
PENDING is how many entries it holds (running, or stuck if it is dead).")]
pub struct Args {
    /// The queue.
    queue: String,
    /// A consumer with no heartbeat for this long is dead (workers beat
    /// every second); one silent for 3 s to this long is late.
    #[arg(long, value_parser = duration, default_value = "30s")]
    dead_after: Duration,
    /// Remove dead consumers that hold no pending entries and that the
    /// group has not seen (no read or claim) for `--dead-after` either; all
    /// three are checked again atomically, on server time, as each is
    /// removed.
    #[arg(long)]
    prune: bool,
}

/// One consumer in `--json` output.
#[derive(Debug, Serialize)]
pub struct ConsumerRow {
    name: String,
    state: &'static str,
    pending: u64,
    idle_ms: Option<u64>,
    heartbeat_age_ms: Option<u64>,
    /// Set with `--prune`: whether it was removed.
    pruned: bool,
}

fn row(c: &ConsumerInfo, dead_after: Duration) -> ConsumerRow {
    ConsumerRow {
        name: c.name.clone(),
        state: if c.is_dead(dead_after) {
            "dead"
        } else if c.is_dead(LATE_AFTER) {
            "late"
        } else {
            "alive"
        },
        pending: c.pending,
        idle_ms: c.idle_ms,
        heartbeat_age_ms: c.heartbeat_age_ms,
        pruned: false,
    }
}

/// Runs `millrace consumers`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let consumers = inspect::consumers(&mut ctx.conn, &queue).await?;
    let mut rows: Vec<ConsumerRow> = consumers.iter().map(|c| row(c, a.dead_after)).collect();
    let mut notes = Vec::new();
    if a.prune {
        for r in rows.iter_mut().filter(|r| r.state == "dead") {
            if r.pending > 0 {
                notes.push(format!(
                    "kept dead consumer {} because it holds {} pending: run `millrace requeue {} --consumer {} --min-idle 0s` first",
                    r.name,
                    r.pending,
                    a.queue,
                    r.name
                ));
                continue;
            }
            // The script checks again, atomically and on server time: still
            // nothing pending, idle in the group and silent past the
            // threshold (a live worker with a skewed clock is never pruned).
            let rule = PruneRule {
                min_idle: a.dead_after,
                min_silence: a.dead_after,
            };
            let left = queue.prune_consumer(&mut ctx.conn, &r.name, rule).await?;
            r.pruned = left == Leave::Removed;
            match left {
                Leave::Removed => {}
                Leave::Pending => notes.push(format!(
                    "kept consumer {}: entries became pending for it meanwhile",
                    r.name
                )),
                Leave::Busy => notes.push(format!(
                    "kept consumer {}: the group saw it within {} (it still reads or claims)",
                    r.name,
                    output::ms(millrace_core::queue::duration_ms(a.dead_after))
                )),
                Leave::Alive => notes.push(format!(
                    "kept consumer {}: it sent a heartbeat meanwhile",
                    r.name
                )),
            }
        }
    }
    if ctx.json {
        for n in &notes {
            eprintln!("{n}");
        }
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        println!("no consumers in queue {:?}", a.queue);
        return Ok(());
    }
    let mut t = output::table(&["CONSUMER", "STATE", "PENDING", "IDLE", "LAST HEARTBEAT"]);
    for r in &rows {
        let state = if r.pruned { "dead (pruned)" } else { r.state };
        t.add_row(vec![
            Cell::new(&r.name),
            cell(
                state,
                r.state != "alive",
                if r.state == "dead" {
                    Color::Red
                } else {
                    Color::Yellow
                },
            ),
            cell(r.pending, r.state == "dead" && r.pending > 0, Color::Red),
            Cell::new(output::opt_ms(r.idle_ms)),
            Cell::new(r.heartbeat_age_ms.map_or_else(
                || "never".to_owned(),
                |ms| format!("{} ago", output::ms(ms)),
            )),
        ]);
    }
    output::print_table(&t);
    for n in &notes {
        println!("{n}");
    }
    if a.prune {
        let pruned = rows.iter().filter(|r| r.pruned).count() as u64;
        println!(
            "pruned {}",
            output::plural(pruned, "dead consumer", "dead consumers")
        );
    }
    Ok(())
}
