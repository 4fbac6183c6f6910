//! The scenarios of issue 5, one module each. Every scenario uses fresh
//! queues, checks what it left behind and deletes them.

pub mod connections;
pub mod e2e;
pub mod enqueue;
pub mod footprint;
pub mod history;
pub mod latency;
pub mod outbox;
pub mod partitions;
pub mod priority;
pub mod process;
pub mod retry;

use millrace::EnqueueOptions;
use millrace_core::{Priority, Queue};
use millrace_jobs::Noop;

use crate::Bench;
use crate::ceiling::payload_pad;

/// Jobs per `enqueue_many` call when filling a queue.
pub const BATCH: usize = 1000;
/// Concurrent `enqueue_many` callers when filling a queue.
pub const FILL_TASKS: u64 = 4;

/// The benchmark's no-op job: a ~100-byte JSON payload, like the ceiling's.
pub fn noop() -> Noop {
    Noop { pad: payload_pad() }
}

/// Enqueues `n` copies of `job` on `queue` with `enqueue_many` in batches of
/// [`BATCH`] from [`FILL_TASKS`] tasks.
pub async fn fill<J>(b: &Bench, queue: &Queue, job: J, n: u64) -> anyhow::Result<()>
where
    J: millrace_core::Job + Clone + Sync,
{
    fill_lane(b, queue, Priority::Default, job, n).await
}

/// [`fill`] into lane `lane` of `queue`.
pub async fn fill_lane<J>(
    b: &Bench,
    queue: &Queue,
    lane: Priority,
    job: J,
    n: u64,
) -> anyhow::Result<()>
where
    J: millrace_core::Job + Clone + Sync,
{
    fill_with(b.client().await?, queue, lane, job, n).await
}

/// [`fill_lane`] through `client` (a cluster client, say).
pub async fn fill_with<J>(
    client: millrace::Client,
    queue: &Queue,
    lane: Priority,
    job: J,
    n: u64,
) -> anyhow::Result<()>
where
    J: millrace_core::Job + Clone + Sync,
{
    let client = std::sync::Arc::new(client);
    let (fill_tasks, batch_n) = (FILL_TASKS, BATCH);
    let batch: std::sync::Arc<Vec<J>> = std::sync::Arc::new(vec![job; batch_n]);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..fill_tasks {
        let share = n / fill_tasks + u64::from(t < n % fill_tasks);
        let client = client.clone();
        let batch = batch.clone();
        let opts = EnqueueOptions::new().queue(queue.name()).priority(lane);
        tasks.spawn(async move {
            let mut left = share as usize;
            while left > 0 {
                let k = left.min(batch_n);
                client.enqueue_many_with(&batch[..k], opts.clone()).await?;
                left -= k;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
