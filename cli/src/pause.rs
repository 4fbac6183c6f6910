//! `millrace pause|resume <queue>`: workers poll the flag every second and
//! stop claiming while it is set; running jobs finish.

use serde::Serialize;

use crate::Ctx;
use crate::output;

/// Flags of `millrace pause` and `millrace resume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue.
    queue: String,
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
    queue.set_paused(&mut ctx.conn, pause).await?;
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
        (true, false) => println!("queue {:?} was already paused", a.queue),
        (false, true) => println!(
            "resumed queue {:?}: workers claim again within a second",
            a.queue
        ),
        (false, false) => println!("queue {:?} was not paused", a.queue),
    }
    Ok(())
}
