//! `millrace pause|resume <queue>`: workers read the flag twice a second,
//! end a blocked read at once and stop claiming while it is set; running
//! jobs finish. A pause records when (server time) and, with `--reason`,
//! why: `queues` and `top` show both. A partitioned queue is paused and
//! resumed with all its partitions.

use serde::Serialize;

use crate::Ctx;
use crate::output;

/// Flags of `millrace pause` and `millrace resume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue.
    queue: String,
    /// Why it is paused (shown by `queues` and `top`; pause only).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct Out<'a> {
    queue: &'a str,
    paused: bool,
    changed: bool,
}

/// Runs `millrace pause` (`pause` true) or `millrace resume`.
pub async fn run(ctx: &mut Ctx, a: Args, pause: bool) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let was = queue.is_paused(&mut ctx.conn).await?;
    if a.reason.is_some() && !pause {
        anyhow::bail!("--reason goes with `millrace pause`, not resume");
    }
    // A partitioned queue is paused and resumed as one: itself and every
    // partition.
    let mut all = vec![queue.clone()];
    for i in queue.partitions_in_use(&mut ctx.conn).await? {
        all.push(queue.partition(i)?);
    }
    for q in &all {
        if pause {
            q.pause(&mut ctx.conn, a.reason.as_deref()).await?;
        } else {
            q.set_paused(&mut ctx.conn, false).await?;
        }
    }
    if all.len() > 1 && !ctx.json {
        println!(
            "{} {} partition(s) of {:?} with it",
            if pause { "paused" } else { "resumed" },
            all.len() - 1,
            a.queue
        );
    }
    let out = Out {
        queue: &a.queue,
        paused: pause,
        changed: was != pause,
    };
    if ctx.json {
        return output::print_json(&out);
    }
    match (pause, out.changed) {
        (true, true) => println!(
            "paused queue {:?}: workers stop claiming within a second; running jobs finish",
            a.queue
        ),
        (true, false) => println!(
            "queue {:?} was already paused (reason and time updated)",
            a.queue
        ),
        (false, true) => println!(
            "resumed queue {:?}: workers claim again within a second",
            a.queue
        ),
        (false, false) => println!("queue {:?} was not paused", a.queue),
    }
    Ok(())
}
