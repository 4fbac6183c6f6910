//! `millrace queues`: one row per known queue.

use comfy_table::Color;
use millrace_core::Queue;
use millrace_core::inspect::{self, LaneStats, QueueStats};
use serde::Serialize;

use crate::Ctx;
use crate::output::{self, cell};

/// One queue in `--json` output.
#[derive(Debug, Serialize)]
pub struct QueueRow {
    name: String,
    ready: u64,
    in_flight: u64,
    scheduled: u64,
    retrying: Option<u64>,
    dead: u64,
    consumers: u64,
    lag_ms: Option<u64>,
    oldest_ms: Option<u64>,
    paused: bool,
    /// Why it was paused (`millrace pause --reason`).
    pause_reason: Option<String>,
    /// When it was paused (unix ms, server time).
    paused_since_ms: Option<u64>,
    processed: u64,
    retried: u64,
    dead_lettered: u64,
    /// Each lane the queue uses (only `default` without lanes).
    lanes: Vec<LaneRow>,
}

/// One lane of a queue in `--json` output.
#[derive(Debug, Serialize)]
pub struct LaneRow {
    /// high, default or low.
    lane: &'static str,
    ready: u64,
    in_flight: u64,
    /// Scheduled and retrying jobs of the lane.
    delayed: u64,
    lag_ms: Option<u64>,
}

impl From<&LaneStats> for LaneRow {
    fn from(l: &LaneStats) -> Self {
        Self {
            lane: l.lane.as_str(),
            ready: l.ready,
            in_flight: l.in_flight,
            delayed: l.delayed,
            lag_ms: l.lag_ms,
        }
    }
}

impl From<&QueueStats> for QueueRow {
    fn from(s: &QueueStats) -> Self {
        Self {
            name: s.name.clone(),
            ready: s.ready,
            in_flight: s.in_flight,
            scheduled: s.scheduled,
            retrying: s.retrying,
            dead: s.dead,
            consumers: s.consumers,
            lag_ms: s.lag_ms,
            oldest_ms: s.oldest_ms,
            paused: s.paused,
            pause_reason: s.pause.as_ref().and_then(|p| p.reason.clone()),
            paused_since_ms: s.pause.as_ref().and_then(|p| p.since_ms),
            processed: s.processed,
            retried: s.retried,
            dead_lettered: s.dead_lettered,
            lanes: s.lanes.iter().map(LaneRow::from).collect(),
        }
    }
}

/// Stats of every known queue, by name.
pub async fn all_stats(ctx: &mut Ctx) -> anyhow::Result<Vec<QueueStats>> {
    let names = inspect::known_queues(&mut ctx.conn, &ctx.prefix).await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let Ok(queue) = Queue::with_prefix(&ctx.prefix, &name) else {
            continue; // a foreign entry in the registry
        };
        out.push(inspect::stats(&mut ctx.conn, &queue).await?);
    }
    Ok(out)
}

/// The row of one lane of a queue with lanes, under the queue's row:
/// `<queue>:<lane>` (no queue name holds a `:`) with the lane's counts.
fn lane_row(queue: &str, l: &LaneStats) -> Vec<comfy_table::Cell> {
    let dash = || comfy_table::Cell::new("-");
    vec![
        comfy_table::Cell::new(format!("{queue}:{}", l.lane)),
        comfy_table::Cell::new(l.ready),
        comfy_table::Cell::new(l.in_flight),
        comfy_table::Cell::new(l.delayed),
        dash(),
        dash(),
        dash(),
        cell(
            output::opt_ms(l.lag_ms),
            l.lag_ms.unwrap_or(0) > 60_000,
            Color::Yellow,
        ),
        dash(),
        dash(),
        dash(),
        dash(),
    ]
}

/// The total row of a partitioned queue (the queue itself and every
/// partition listed): `<queue> (total)`, the counts summed, the worst lag
/// and oldest age ([`QueueStats::total`]).
fn total_row(base: &str, members: &[&QueueStats]) -> Vec<comfy_table::Cell> {
    let t = QueueStats::total(base, members);
    let dash = || comfy_table::Cell::new("-");
    vec![
        comfy_table::Cell::new(&t.name),
        comfy_table::Cell::new(t.ready),
        comfy_table::Cell::new(t.in_flight),
        comfy_table::Cell::new(t.scheduled),
        comfy_table::Cell::new(t.retrying.map_or_else(|| "?".into(), |n| n.to_string())),
        comfy_table::Cell::new(t.dead),
        dash(),
        comfy_table::Cell::new(output::opt_ms(t.lag_ms)),
        comfy_table::Cell::new(output::opt_ms(t.oldest_ms)),
        dash(),
        comfy_table::Cell::new(t.processed),
        comfy_table::Cell::new(t.retried + t.dead_lettered),
    ]
}

/// Runs `millrace queues`.
pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let stats = all_stats(ctx).await?;
    if ctx.json {
        let rows: Vec<QueueRow> = stats.iter().map(QueueRow::from).collect();
        return output::print_json(&rows);
    }
    if stats.is_empty() {
        println!(
            "no queues known under prefix {:?} at {} (a queue is known once a worker or producer declared it)",
            ctx.prefix, ctx.url
        );
        return Ok(());
    }
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    let mut t = output::table(&[
        "QUEUE",
        "READY",
        "IN FLIGHT",
        "DELAYED",
        "RETRYING",
        "DEAD",
        "CONSUMERS",
        "LAG",
        "OLDEST",
        "PAUSED",
        "PROCESSED",
        "FAILED",
    ]);
    for (i, s) in stats.iter().enumerate() {
        t.add_row(vec![
            comfy_table::Cell::new(&s.name),
            comfy_table::Cell::new(s.ready),
            comfy_table::Cell::new(s.in_flight),
            comfy_table::Cell::new(s.scheduled),
            cell(
                s.retrying.map_or_else(|| "?".into(), |n| n.to_string()),
                s.retrying.unwrap_or(1) > 0,
                Color::Yellow,
            ),
            cell(s.dead, s.dead > 0, Color::Red),
            cell(s.consumers, s.consumers == 0 && s.ready > 0, Color::Red),
            cell(
                output::opt_ms(s.lag_ms),
                s.lag_ms.unwrap_or(0) > 60_000,
                Color::Yellow,
            ),
            comfy_table::Cell::new(output::opt_ms(s.oldest_ms)),
            cell(
                output::paused(s.pause.as_ref(), now),
                s.paused,
                Color::Yellow,
            ),
            comfy_table::Cell::new(s.processed),
            comfy_table::Cell::new(s.retried + s.dead_lettered),
        ]);
        if s.lanes.len() > 1 {
            for l in &s.lanes {
                t.add_row(lane_row(&s.name, l));
            }
        }
        // After the last partition of a partitioned queue: its total.
        if let Some((base, members)) = inspect::partition_group_ending_at(&stats, i) {
            t.add_row(total_row(base, &members));
        }
    }
    output::print_table(&t);
    Ok(())
}
