//! `millrace enqueue <queue> <job-name> <json>`: enqueue a job by hand.

use std::time::Duration;

use anyhow::bail;
use millrace_core::{Envelope, JobId, Queue, When};
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
}

#[derive(Debug, Serialize)]
struct Out<'a> {
    queue: &'a str,
    job_id: &'a str,
    job: &'a str,
    entry_id: Option<String>,
    due_at_ms: Option<u64>,
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
    let queue = if a.create {
        Queue::with_prefix(&ctx.prefix, &a.queue)?
    } else {
        ctx.queue(&a.queue).await?
    };
    queue.declare(&mut ctx.conn).await?;
    let mut job = Envelope::new(JobId::new().0, &a.job, payload);
    job.max_attempts = a.max_attempts;
    job.enqueued_at = Some(output::local_now_ms());
    let mut out = Out {
        queue: &a.queue,
        job_id: &job.id,
        job: &a.job,
        entry_id: None,
        due_at_ms: None,
    };
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
            "enqueued job {} ({}) on queue {:?} as entry {e}",
            job.id, a.job, a.queue
        ),
        (None, Some(due)) => println!(
            "scheduled job {} ({}) on queue {:?} for {}",
            job.id,
            a.job,
            a.queue,
            output::at(due)
        ),
        (None, None) => println!("enqueued job {} ({}) on queue {:?}", job.id, a.job, a.queue),
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
