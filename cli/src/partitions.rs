//! `millrace partitions <queue> [--set N]`: a queue's partition count and
//! what each partition holds; `--set` changes the count (on a Redis
//! Cluster it also places the partitions evenly over the masters; the same
//! count again rebalances after a resharding). Producers use a new layout
//! within 5 s, workers at their next reclaim round. Lowering it strands
//! nothing: workers keep reading every partition the registry knows. Jobs
//! of one key keep their order only while the layout stays.

use millrace_core::partition::layout::partition_slot;
use millrace_core::slot::read_slot_map;
use millrace_core::{Queue, inspect};
use serde::Serialize;

use crate::Ctx;
use crate::output;

/// Flags of `millrace partitions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue.
    queue: String,
    /// Set the partition count (1 to 256; 1 stops partitioning new jobs).
    #[arg(long)]
    set: Option<u32>,
}

#[derive(Debug, Serialize)]
struct Part {
    partition: u32,
    name: String,
    /// Its hash slot on a Redis Cluster.
    slot: u16,
    /// The master serving it on a Redis Cluster (`host:port`, as the
    /// cluster announces it).
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    /// False for a partition no longer in the layout (still read until
    /// empty).
    current: bool,
    ready: u64,
    in_flight: u64,
    delayed: u64,
    dead: u64,
    consumers: u64,
}

#[derive(Debug, Serialize)]
struct Out {
    queue: String,
    count: u32,
    partitions: Vec<Part>,
}

/// Runs `millrace partitions`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let before = queue.layout(&mut ctx.conn).await?;
    if let Some(n) = a.set {
        let after = queue.set_partitions(&mut ctx.conn, n).await?;
        if !ctx.json {
            println!(
                "queue {:?}: {} → {n} partition(s); producers use it within 5 s, workers within a reclaim round",
                a.queue,
                before.count()
            );
            if before.is_partitioned() && after != before {
                println!(
                    "note: keys now map to other partitions; jobs already queued under a key may run beside newer ones of that key"
                );
            }
        }
    }
    let layout = queue.layout(&mut ctx.conn).await?;
    let count = layout.count();
    let map = if ctx.conn.is_cluster() {
        read_slot_map(&mut ctx.conn).await?
    } else {
        None
    };
    let mut parts = Vec::new();
    for i in queue.partitions_in_use(&mut ctx.conn).await? {
        let p = queue.partition(i)?;
        let s = inspect::stats(&mut ctx.conn, &p).await?;
        parts.push(Part {
            partition: i,
            name: s.name.clone(),
            slot: partition_slot(&a.queue, i),
            node: map
                .as_ref()
                .and_then(|m| m.master_for_key(p.name()))
                .map(|m| format!("{}:{}", m.host, m.port)),
            current: layout.is_partitioned() && layout.labels().contains(&i),
            ready: s.ready,
            in_flight: s.in_flight,
            delayed: s.scheduled + s.retrying.unwrap_or(0),
            dead: s.dead,
            consumers: s.consumers,
        });
    }
    if ctx.json {
        return output::print_json(&Out {
            queue: a.queue,
            count,
            partitions: parts,
        });
    }
    if a.set.is_some() {
        return Ok(());
    }
    if parts.is_empty() {
        println!("queue {:?} is not partitioned", a.queue);
        return Ok(());
    }
    println!("queue {:?}: {count} partition(s)", a.queue);
    let cluster = ctx.conn.is_cluster();
    let mut head = vec!["PARTITION", "QUEUE"];
    if cluster {
        head.extend(["SLOT", "NODE"]);
    }
    head.extend(["READY", "IN FLIGHT", "DELAYED", "DEAD", "CONSUMERS"]);
    let mut t = output::table(&head);
    for p in &parts {
        let retired = if p.current { "" } else { " (retired)" };
        let mut row = vec![format!("{}{retired}", p.partition), p.name.clone()];
        if cluster {
            row.push(p.slot.to_string());
            row.push(p.node.clone().unwrap_or_else(|| "?".to_owned()));
        }
        row.extend([
            p.ready.to_string(),
            p.in_flight.to_string(),
            p.delayed.to_string(),
            p.dead.to_string(),
            p.consumers.to_string(),
        ]);
        t.add_row(row);
    }
    output::print_table(&t);
    Ok(())
}

/// What a listing command lists, for [`hint`].
#[derive(Debug, Clone, Copy)]
pub enum Held {
    /// Dead-letter entries (`dead list`).
    Dead,
    /// Delivered, unacknowledged entries (`pending`).
    Pending,
    /// Scheduled jobs and retries (`delayed list`).
    Delayed,
}

impl Held {
    fn noun(self, n: u64) -> &'static str {
        match (self, n == 1) {
            (Self::Dead, true) => "dead job",
            (Self::Dead, false) => "dead jobs",
            (Self::Pending, true) => "pending entry",
            (Self::Pending, false) => "pending entries",
            (Self::Delayed, true) => "delayed job",
            (Self::Delayed, false) => "delayed jobs",
        }
    }

    fn command(self) -> &'static str {
        match self {
            Self::Dead => "dead list",
            Self::Pending => "pending",
            Self::Delayed => "delayed list",
        }
    }
}

/// After a listing of a partitioned queue's own entries: one line naming
/// the partitions that hold more (a listing reads one partition, and a
/// partitioned queue's jobs are in its partitions), with the command that
/// lists the first. Nothing for a queue without partitions, or when they
/// hold none.
pub async fn hint(ctx: &mut Ctx, queue: &Queue, what: Held) -> anyhow::Result<()> {
    if ctx.json {
        return Ok(());
    }
    let mut held = Vec::new();
    for label in queue.partitions_in_use(&mut ctx.conn).await? {
        let p = queue.partition(label)?;
        let n = match what {
            Held::Dead => inspect::dead_count(&mut ctx.conn, &p).await?,
            Held::Pending => inspect::pending_count(&mut ctx.conn, &p).await?,
            Held::Delayed => inspect::delayed_count(&mut ctx.conn, &p).await?,
        };
        if n > 0 {
            held.push((p.name().to_owned(), n));
        }
    }
    let Some((first, _)) = held.first() else {
        return Ok(());
    };
    let total: u64 = held.iter().map(|(_, n)| n).sum();
    let each: Vec<String> = held
        .iter()
        .take(8)
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    let more = if held.len() > 8 { ", …" } else { "" };
    println!(
        "queue {:?} is partitioned: its partitions hold {total} {} ({}{more}); `millrace {} {first}` lists them",
        queue.name(),
        what.noun(total),
        each.join(", "),
        what.command(),
    );
    Ok(())
}
