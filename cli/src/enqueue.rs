//! `millrace enqueue <queue> <job-name> <json>`: enqueue a job by hand.

use std::time::Duration;

use anyhow::bail;
use millrace_core::partition;
use millrace_core::{
    EnqueueStatus, Envelope, JobId, Priority, Queue, Submit, Unique, UniqueMode, When,
};
use serde::Serialize;

use crate::output;
use crate::{Ctx, duration};

/// Flags of `millrace enqueue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue.
    queue: String,
    /// The job's name (its handler's `Job::NAME`).
    job: String,
    /// The payload as JSON, e.g. '{"ms": 100}'.
    payload: String,
    /// Run it after this delay instead of now (e.g. 10m).
    #[arg(long = "in", value_parser = duration)]
    delay: Option<Duration>,
    /// Attempts allowed (default: the job's retry policy).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Create the queue if it is not known yet.
    #[arg(long)]
    create: bool,
    /// A unique key: while a job holds it, enqueueing another with it
    /// prints `duplicate of <job id>` and enqueues nothing.
    #[arg(long, value_name = "KEY")]
    unique: Option<String>,
    /// How the key holds: while-live (until the job succeeds, is
    /// dead-lettered or cancelled; at most --unique-ttl, default 24h),
    /// throttle (for --unique-ttl after the first enqueue), debounce (the
    /// job runs --unique-ttl after the latest enqueue, which replaces its
    /// payload while it waits).
    #[arg(long, value_enum, default_value_t = Mode::WhileLive, requires = "unique")]
    unique_mode: Mode,
    /// The lock's TTL (while-live), window (throttle, debounce), e.g. 10m.
    #[arg(long, value_parser = duration, value_name = "DUR", requires = "unique")]
    unique_ttl: Option<Duration>,
    /// The lane to enqueue into: high, default or low (workers serve high
    /// before default before low).
    #[arg(long, value_name = "LANE")]
    priority: Option<String>,
    /// On a partitioned queue, the key that picks the partition (jobs of
    /// one key share one, in order); default: the unique key, else a
    /// partition chosen by the job id.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
}

/// `--unique-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Until the job ends.
    WhileLive,
    /// For the TTL after the first enqueue.
    Throttle,
    /// Runs the TTL after the latest enqueue.
    Debounce,
}

/// The `--unique*` flags as a [`Unique`], checked.
fn unique_of(a: &Args) -> anyhow::Result<Option<Unique>> {
    let Some(key) = a.unique.clone() else {
        return Ok(None);
    };
    let u = match (a.unique_mode, a.unique_ttl) {
        (Mode::WhileLive, None) => Unique::while_live(key),
        (Mode::WhileLive, Some(t)) => Unique::while_live(key).ttl(t),
        (Mode::Throttle, Some(t)) => Unique::throttle(key, t),
        (Mode::Debounce, Some(t)) => Unique::debounce(key, t),
        (mode, None) => bail!(
            "--unique-mode {} needs --unique-ttl (its window, e.g. 10m)",
            if mode == Mode::Throttle {
                "throttle"
            } else {
                "debounce"
            }
        ),
    };
    u.validate()?;
    Ok(Some(u))
}

#[derive(Debug, Serialize)]
struct Out<'a> {
    queue: &'a str,
    job_id: &'a str,
    job: &'a str,
    entry_id: Option<String>,
    due_at_ms: Option<u64>,
    /// `new`, `duplicate` or `debounced`.
    status: &'static str,
    /// For a duplicate or a debounce: the job that holds the key.
    existing_job_id: Option<String>,
    /// The lane: high, default or low.
    lane: &'static str,
    /// The partition, on a partitioned queue.
    partition: Option<u32>,
}

/// Checks a JSON payload; the error gives the position of the fault.
pub fn check_json(payload: &str) -> anyhow::Result<String> {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(v) => Ok(v.to_string()),
        Err(e) => bail!(
            "bad JSON payload at line {}, column {}: {}",
            e.line(),
            e.column(),
            strip_position(&e.to_string())
        ),
    }
}

/// serde_json's message without its own " at line L column C" suffix.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Runs `millrace enqueue`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    let payload = check_json(&a.payload)?;
    if a.job.trim().is_empty() {
        bail!("the job name is empty");
    }
    let unique = unique_of(&a)?;
    let priority = match &a.priority {
        Some(p) => p.parse::<Priority>()?,
        None => Priority::Default,
    };
    let queue = if a.create {
        Queue::with_prefix(&ctx.prefix, &a.queue)?
    } else {
        ctx.queue(&a.queue).await?
    };
    let mut job = Envelope::new(JobId::new().0, &a.job, payload);
    // On a partitioned queue, the partition of the key (as the SDK places
    // jobs; without a key, one picked by the job id).
    let layout = queue.layout(&mut ctx.conn).await?;
    let partition = layout.is_partitioned().then(|| {
        let by = a
            .key
            .as_deref()
            .or(unique.as_ref().map(|u| u.key.as_str()))
            .unwrap_or(&job.id);
        layout.label(partition::partition_of(by, layout.count()))
    });
    let queue = match partition {
        Some(i) => queue.partition(i)?,
        None => queue,
    };
    // The queue's default lane first (the queue's own stream and group),
    // then the lane's.
    queue.declare(&mut ctx.conn).await?;
    let queue = queue.lane(priority);
    queue.declare(&mut ctx.conn).await?;
    job.max_attempts = a.max_attempts;
    job.enqueued_at = Some(output::local_now_ms());
    job.priority = priority;
    let mut out = Out {
        queue: &a.queue,
        job_id: &job.id,
        job: &a.job,
        entry_id: None,
        due_at_ms: None,
        status: "new",
        existing_job_id: None,
        lane: priority.as_str(),
        partition,
    };
    let place = match partition {
        Some(i) => format!("{}#{i}", a.queue),
        None => a.queue.clone(),
    };
    let where_ = match priority {
        Priority::Default => format!("queue {place:?}"),
        p => format!("queue {place:?} (lane {p})"),
    };
    if let Some(u) = &unique {
        let delay = match (a.delay, u.mode) {
            (None, UniqueMode::Debounce) => Some(u.ttl),
            (d, _) => d,
        };
        let submit = [Submit::new(&job).unique(Some(u)).when(delay.map(When::In))];
        let done = queue.enqueue_unique(&mut ctx.conn, &submit).await?;
        let Some(done) = done.into_iter().next() else {
            bail!("redis enqueue failed: no outcome");
        };
        match done.status {
            EnqueueStatus::New => {}
            EnqueueStatus::Debounced => {
                out.status = "debounced";
                out.existing_job_id = Some(done.id.0.clone());
            }
            _ => {
                out.status = "duplicate";
                out.existing_job_id = Some(done.id.0.clone());
            }
        }
        if ctx.json {
            return output::print_json(&out);
        }
        match (out.status, delay) {
            ("duplicate", _) => println!("duplicate of {}", done.id),
            ("debounced", Some(d)) => println!(
                "debounced into job {} ({}) on {}: it runs in {}",
                done.id,
                a.job,
                where_,
                output::ms(millrace_core::queue::duration_ms(d))
            ),
            (_, Some(d)) => println!(
                "scheduled job {} ({}) on {} in {}",
                job.id,
                a.job,
                where_,
                output::ms(millrace_core::queue::duration_ms(d))
            ),
            (_, None) => println!("enqueued job {} ({}) on {}", job.id, a.job, where_),
        }
        return Ok(());
    }
    match a.delay {
        Some(d) => {
            out.due_at_ms = Some(queue.schedule(&mut ctx.conn, &job, When::In(d)).await?);
        }
        None => out.entry_id = queue.enqueue(&mut ctx.conn, &[job.clone()]).await?.pop(),
    }
    if ctx.json {
        return output::print_json(&out);
    }
    match (&out.entry_id, out.due_at_ms) {
        (Some(e), _) => println!(
            "enqueued job {} ({}) on {} as entry {e}",
            job.id, a.job, where_
        ),
        (None, Some(due)) => println!(
            "scheduled job {} ({}) on {} for {}",
            job.id,
            a.job,
            where_,
            output::at(due)
        ),
        (None, None) => println!("enqueued job {} ({}) on {}", job.id, a.job, where_),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_json_names_its_position() {
        let err = check_json("{\"ms\": 1,\n \"x\": }")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "bad JSON payload at line 2, column 7: expected value");
        assert_eq!(check_json(" {\"a\" : 1} ").unwrap(), "{\"a\":1}");
    }
}
