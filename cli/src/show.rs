//! `millrace show <queue> <job-id|entry-id>`: one job's whole story.

use anyhow::bail;
use millrace_core::history::{self, Finished};
use millrace_core::inspect::{self, Location};
use serde::Serialize;

use crate::Ctx;
use crate::output;

/// Flags of `millrace show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue.
    queue: String,
    /// A job id, or a stream entry id (ready, pending or dead).
    id: String,
}

/// One place a job was found, in `--json` output. Every key is always
/// present (null when it does not apply).
#[derive(Debug, Serialize)]
pub struct Found {
    /// ready, in_flight, pending_deleted, scheduled, retrying, dead, or
    /// (from the history) succeeded, dead or cancelled with `finished`.
    state: &'static str,
    /// From the queue's history: when and how it finished.
    finished: Option<FinishedJson>,
    entry_id: Option<String>,
    job_id: Option<String>,
    name: Option<String>,
    attempt: Option<u32>,
    max_attempts: Option<u32>,
    enqueued_at_ms: Option<u64>,
    error: Option<String>,
    /// The payload as JSON (a string when it is not valid JSON).
    payload: Option<serde_json::Value>,
    consumer: Option<String>,
    idle_ms: Option<u64>,
    deliveries: Option<u64>,
    due_at_ms: Option<u64>,
    dead_at_ms: Option<u64>,
    /// The lane it is in (high, default, low; for a dead job, the lane a
    /// replay puts it in); null for a history record.
    lane: Option<&'static str>,
    /// All raw fields, in wire order.
    fields: Vec<(String, String)>,
}

impl Found {
    fn new(state: &'static str, entry_id: Option<String>, fields: Vec<(String, String)>) -> Self {
        let get = |k: &str| {
            fields
                .iter()
                .rev()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.clone())
        };
        let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
        Self {
            state,
            entry_id,
            job_id: get("id"),
            name: get("name"),
            attempt: get("attempt").and_then(|v| v.parse().ok()).or(Some(1)),
            max_attempts: get("max_attempts").and_then(|v| v.parse().ok()),
            enqueued_at_ms: num("enqueued_at"),
            error: get("error"),
            payload: get("payload")
                .map(|p| serde_json::from_str(&p).unwrap_or(serde_json::Value::String(p))),
            consumer: None,
            idle_ms: None,
            deliveries: None,
            due_at_ms: None,
            dead_at_ms: num("dead_at"),
            lane: None,
            finished: None,
            fields,
        }
    }
}

/// A history record in `--json` output.
#[derive(Debug, Serialize)]
pub struct FinishedJson {
    outcome: String,
    finished_at_ms: u64,
    attempts: Option<u32>,
    took_ms: Option<u64>,
    consumer: String,
    history_entry: String,
}

/// A history record as the JSON/human record.
pub fn finished(f: Finished) -> Found {
    let state = match f.outcome_text.as_str() {
        "succeeded" => "succeeded",
        "dead" => "dead",
        "cancelled" => "cancelled",
        _ => "finished",
    };
    let mut r = Found::new(state, None, Vec::new());
    r.job_id = Some(f.job_id);
    r.name = Some(f.name).filter(|n| !n.is_empty());
    r.attempt = f.attempts;
    r.error = f.error;
    r.finished = Some(FinishedJson {
        outcome: f.outcome_text,
        finished_at_ms: f.finished_at_ms,
        attempts: f.attempts,
        took_ms: f.took_ms,
        consumer: f.consumer,
        history_entry: f.entry_id,
    });
    r
}

/// "succeeded at 2026-11-29 00:40:12 on web-1 (2 attempts, 35ms), 5m ago".
fn finished_line(f: &Found, h: &FinishedJson, now: u64) -> String {
    let on = if h.consumer.is_empty() {
        String::new()
    } else {
        format!(" on {}", h.consumer)
    };
    let attempts = h.attempts.map_or_else(
        || "? attempts".to_owned(),
        |a| output::plural(u64::from(a), "attempt", "attempts"),
    );
    let took = h
        .took_ms
        .map_or_else(String::new, |t| format!(", took {}", output::ms(t)));
    format!(
        "{} at {}{on} ({attempts}{took}), {} ago",
        f.state,
        output::at(h.finished_at_ms),
        output::ms(now.saturating_sub(h.finished_at_ms))
    )
}

/// A location as the JSON/human record.
pub fn found(loc: Location) -> Found {
    let lane = loc.lane();
    let mut f = at_location(loc);
    f.lane = Some(lane.as_str());
    f
}

fn at_location(loc: Location) -> Found {
    match loc {
        Location::Ready(e) => Found::new("ready", Some(e.id), e.fields),
        Location::InFlight {
            entry,
            consumer,
            idle_ms,
            deliveries,
        } => {
            let mut f = Found::new("in_flight", Some(entry.id), entry.fields);
            f.consumer = Some(consumer);
            f.idle_ms = Some(idle_ms);
            f.deliveries = Some(deliveries);
            f
        }
        Location::PendingDeleted {
            entry_id, consumer, ..
        } => {
            let mut f = Found::new("pending_deleted", Some(entry_id), Vec::new());
            f.consumer = Some(consumer);
            f.attempt = None;
            f
        }
        Location::Delayed(d) => {
            let state = if d.is_retry() {
                "retrying"
            } else {
                "scheduled"
            };
            let mut f = Found::new(state, None, d.fields.clone().unwrap_or_default());
            f.job_id = Some(d.id.clone());
            f.due_at_ms = Some(d.due_ms);
            f
        }
        Location::Dead(e) => Found::new("dead", Some(e.id), e.fields),
        _ => Found::new("unknown", None, Vec::new()),
    }
}

/// Prints found records, for people.
pub fn print_human(records: &[Found], now: u64) {
    for (i, f) in records.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let where_ = match (f.state, &f.finished) {
            (_, Some(h)) => finished_line(f, h, now),
            _ => match f.state {
                "ready" => format!(
                    "ready: waiting for a worker for {}",
                    output::ms(now.saturating_sub(entry_time(f)))
                ),
                "in_flight" => format!(
                    "in flight: held by consumer {} (idle {}, delivered {} times)",
                    f.consumer.as_deref().unwrap_or("?"),
                    output::opt_ms(f.idle_ms),
                    f.deliveries.unwrap_or(0)
                ),
                "pending_deleted" => format!(
                    "pending for consumer {} but its entry was deleted: nothing left to run (requeue drops it)",
                    f.consumer.as_deref().unwrap_or("?")
                ),
                "scheduled" | "retrying" => {
                    let due = f.due_at_ms.unwrap_or(0);
                    let when = if due > now {
                        format!("in {}", output::ms(due - now))
                    } else {
                        format!("now (due {} ago)", output::ms(now - due))
                    };
                    format!("{}: runs {when} ({})", f.state, output::at(due))
                }
                "dead" => format!(
                    "dead: dead-lettered {} ago ({})",
                    output::ms(now.saturating_sub(f.dead_at_ms.unwrap_or_else(|| entry_time(f)))),
                    output::at(f.dead_at_ms.unwrap_or_else(|| entry_time(f)))
                ),
                other => other.to_owned(),
            },
        };
        let line = |k: &str, v: String| println!("{k:<10}{v}");
        line("job", f.job_id.clone().unwrap_or_else(|| "-".into()));
        line("name", f.name.clone().unwrap_or_else(|| "-".into()));
        line("where", where_);
        if let Some(l) = f.lane.filter(|l| *l != "default") {
            line("lane", l.to_owned());
        }
        if let Some(e) = &f.entry_id {
            line("entry", e.clone());
        }
        if let Some(a) = f.attempt {
            let of = f
                .max_attempts
                .map_or_else(String::new, |m| format!(" of {m}"));
            line("attempt", format!("{a}{of}"));
        }
        if let Some(t) = f.enqueued_at_ms {
            line(
                "enqueued",
                format!(
                    "{} ago ({})",
                    output::ms(now.saturating_sub(t)),
                    output::at(t)
                ),
            );
        }
        if let Some(e) = &f.error {
            line("error", e.clone());
        }
        if f.state == "dead"
            && let Some((_, e)) = f.fields.iter().rev().find(|(k, _)| k == "entry")
        {
            line("was entry", e.clone());
        }
        for (k, v) in &f.fields {
            if !inspect::LABELLED_FIELDS.contains(&k.as_str()) {
                line(k, v.clone());
            }
        }
        if let Some(p) = &f.payload {
            println!("payload");
            let pretty = serde_json::to_string_pretty(p).unwrap_or_default();
            for l in pretty.lines() {
                println!("  {l}");
            }
        }
    }
}

fn entry_time(f: &Found) -> u64 {
    f.entry_id.as_deref().map_or(0, inspect::entry_ms)
}

/// Runs `millrace show`.
pub async fn run(ctx: &mut Ctx, a: Args) -> anyhow::Result<()> {
    let queue = ctx.queue(&a.queue).await?;
    let locations = inspect::find(&mut ctx.conn, &queue, &a.id).await?;
    let done = if inspect::is_entry_id(&a.id) {
        None
    } else {
        history::find_finished(&mut ctx.conn, &queue, &a.id).await?
    };
    if locations.is_empty() && done.is_none() {
        bail!(
            "no job or entry {:?} in queue {:?} (looked in the ready stream, pending entries, delayed jobs, the dead-letter stream and the history of finished jobs)",
            a.id,
            a.queue
        );
    }
    // Where the job is now first (a job replayed after it finished is
    // waiting or running again), then the history's record of how it
    // finished. A dead job still in the dead-letter stream is shown from
    // there (with its payload), not twice.
    let in_dead = locations.iter().any(|l| matches!(l, Location::Dead(_)));
    let records: Vec<Found> = locations
        .into_iter()
        .map(found)
        .chain(
            done.filter(|f| !(in_dead && f.outcome == Some(history::Outcome::Dead)))
                .map(finished),
        )
        .collect();
    if ctx.json {
        #[derive(Serialize)]
        struct Out<'a> {
            queue: &'a str,
            id: &'a str,
            found: &'a [Found],
        }
        return output::print_json(&Out {
            queue: &a.queue,
            id: &a.id,
            found: &records,
        });
    }
    let now = inspect::server_now_ms(&mut ctx.conn).await?;
    print_human(&records, now);
    Ok(())
}
