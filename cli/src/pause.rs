//! `millrace pause|resume <queue>`: workers read the flag twice a second,
//! end a blocked read at once and stop claiming while it is set; running
//! jobs finish. A pause records when (server time) and, with `--reason`,
//! why: `queues` and `top` show both.

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
    if pause {
        queue.pause(&mut ctx.conn, a.reason.as_deref()).await?;
    } else {
        queue.set_paused(&mut ctx.conn, false).await?;
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
