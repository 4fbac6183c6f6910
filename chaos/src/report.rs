//! The end of the run: what happened to every job, printed as a few lines
//! of explanation and then `name: value` pairs, the last of which is
//! `result: ok` or `result: FAILED`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::audit::{Audit, PendingSample};
use crate::deploy::Deployer;
use crate::record::Records;
use crate::workers::Kill;

/// Everything the report is computed from.
pub struct Outcome<'a> {
    /// Every job id of the run, in enqueue order.
    pub ids: &'a [String],
    /// When each job of `ids` was enqueued (shorter than `ids` when the
    /// producer did not finish).
    pub enqueued_at: &'a [Instant],
    /// Jobs the producer sent twice (a batch retried after an error).
    pub resent: usize,
    /// How long each job sleeps.
    pub job_ms: u64,
    /// The workers' run records.
    pub records: &'a Records,
    /// The queue's contents at the end.
    pub audit: &'a Audit,
    /// The SIGKILLs.
    pub kills: &'a [Kill],
    /// Redis restarts (0 or 1).
    pub redis_restarts: u8,
    /// The rolling deploy, when `--deploys`.
    pub deploy: Option<&'a Deployer>,
    /// Connections killed, when `--net-drops`.
    pub net_drops: Option<usize>,
    /// The pending list's worst figures, sampled during the run.
    pub pending: PendingSample,
    /// How long the run took (start of the fault phase to the end).
    pub elapsed: Duration,
}

/// Prints the report; returns whether the run passed.
pub fn print(o: &Outcome) -> bool {
    let want: HashSet<&str> = o.ids.iter().map(String::as_str).collect();
    let a = o.audit;
    let records = o.records;
    let completed = records.distinct_in(&want);
    let never_ran: Vec<&str> = o
        .ids
        .iter()
        .map(String::as_str)
        .filter(|id| records.first_run(id).is_none())
        .collect();
    let stranded: Vec<&str> = never_ran.iter().copied().filter(|id| a.holds(id)).collect();
    let lost = never_ran
        .iter()
        .filter(|id| !a.holds(id) && !a.dead.contains(**id))
        .count();
    let false_dead_letters = a.dead.len();
    let duplicated = records.duplicated_in(&want);
    let bound = o.kills.iter().map(|k| k.in_flight.len()).sum::<usize>() + o.resent;
    let mut recovery: Vec<Duration> = o
        .kills
        .iter()
        .filter_map(|k| records.recovery_time(k.at, &k.in_flight))
        .collect();
    recovery.sort();
    let job = Duration::from_millis(o.job_ms);
    let mut pickup: Vec<Duration> = o
        .ids
        .iter()
        .zip(o.enqueued_at)
        .filter_map(|(id, t0)| {
            let ran = records.first_run(id)?;
            Some(ran.saturating_duration_since(*t0).saturating_sub(job))
        })
        .collect();
    pickup.sort();
    let unexpected = records.unexpected(&want);
    let deploy_failures = o.deploy.map_or(0, |d| d.failures.len());
    let left_pending = o.deploy.map_or(0, |d| d.left_pending);
    let produced = o.enqueued_at.len();
    let ok = lost == 0
        && stranded.is_empty()
        && false_dead_letters == 0
        && produced == o.ids.len()
        && a.stream_entries == 0
        && a.pending_entries == 0
        && a.delayed.is_empty()
        && unexpected == 0
        && deploy_failures == 0
        && left_pending == 0;

    println!();
    println!("Duplicates are jobs that finished on a worker killed before its ack was");
    println!("written, and ran again elsewhere, or that the producer sent twice (a batch");
    println!("retried after an error, e.g. during the Redis restart): at most what the");
    println!("killed workers had in flight at each kill plus the jobs resent, summed in");
    println!("duplicate_bound. The bound does not cover dropped connections (--net-drops)");
    println!("nor a worker that shuts down while Redis restarts (it gives up unwritten");
    println!("acks after 3 tries): jobs whose acks were lost that way run again too.");
    println!("Stranded jobs never ran but are still in Redis; lost jobs never ran and");
    println!("are nowhere. The chaos job never fails, so every dead-lettered job is a");
    println!("false dead letter. Pickup is enqueue to first finish, minus the job's");
    println!("own time (to ~20 ms): a SIGKILLed worker's jobs wait out its lease.");
    println!("deliveries_max is the highest delivery count seen on a pending entry");
    println!("(sampled): a job is delivered once, again after a SIGKILL; the workers");
    println!("dead-letter an expired entry at 5. consumer_pending_max is the most");
    println!("entries seen pending for one consumer, which runs at most --concurrency.");
    if o.deploy.is_some() {
        println!("A worker SIGTERMed by a deploy must exit 0 within its grace, having");
        println!("handed back its jobs: entries still pending for its consumer after the");
        println!("exit (deploy_left_pending) wait out a lease, and fail the run.");
    }
    if !stranded.is_empty() {
        let count = |set: &HashSet<String>| stranded.iter().filter(|id| set.contains(**id)).count();
        println!();
        println!(
            "stranded: {} ready, {} behind the group's last-delivered id and not pending (no read delivers them again), {} pending, {} delayed; e.g. {}",
            count(&a.ready),
            count(&a.behind),
            count(&a.pending),
            count(&a.delayed),
            stranded
                .iter()
                .take(3)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !a.dead_errors.is_empty() {
        println!();
        for (error, n) in dead_reasons(&a.dead_errors).iter().take(5) {
            println!("dead-lettered {n}× with error: {error}");
        }
    }
    if let Some(d) = o.deploy {
        for f in &d.failures {
            println!("deploy failure: {f}");
        }
    }
    println!();
    println!("enqueued: {produced}");
    println!("completed: {completed}");
    println!("lost: {lost}");
    println!("stranded: {}", stranded.len());
    println!("false_dead_letters: {false_dead_letters}");
    println!("duplicated: {duplicated}");
    println!("duplicate_bound: {bound}");
    println!("dead_lettered: {}", a.dead_entries);
    println!("unexpected: {unexpected}");
    println!("kills: {}", o.kills.len());
    if let Some(d) = o.deploy {
        println!("deploys: {}", d.restarts);
        println!("deploy_bad_exits: {deploy_failures}");
        println!("deploy_exit_max_ms: {}", d.slowest_exit.as_millis());
        println!("deploy_left_pending: {left_pending}");
    }
    if let Some(n) = o.net_drops {
        println!("net_drops: {n}");
    }
    println!("redis_restarts: {}", o.redis_restarts);
    println!("deliveries_max: {}", o.pending.deliveries);
    println!("consumer_pending_max: {}", o.pending.per_consumer);
    println!(
        "recovery_median_ms: {}",
        percentile(&recovery, 50).as_millis()
    );
    println!(
        "recovery_max_ms: {}",
        percentile(&recovery, 100).as_millis()
    );
    println!("pickup_median_ms: {}", percentile(&pickup, 50).as_millis());
    println!("pickup_p99_ms: {}", percentile(&pickup, 99).as_millis());
    println!("pickup_max_ms: {}", percentile(&pickup, 100).as_millis());
    println!("stream_empty: {}", a.stream_entries == 0);
    println!("pending_empty: {}", a.pending_entries == 0);
    println!("delayed_empty: {}", a.delayed.is_empty());
    println!("seconds: {:.1}", o.elapsed.as_secs_f64());
    println!("result: {}", if ok { "ok" } else { "FAILED" });
    ok
}

/// Dead-letter errors with every number replaced by `N` ("delivered N
/// times ..."), most frequent first.
fn dead_reasons(errors: &HashMap<String, usize>) -> Vec<(String, usize)> {
    let mut by_reason: HashMap<String, usize> = HashMap::new();
    for (error, n) in errors {
        let mut reason = String::with_capacity(error.len());
        for c in error.chars() {
            if !c.is_ascii_digit() {
                reason.push(c);
            } else if !reason.ends_with('N') {
                reason.push('N');
            }
        }
        *by_reason.entry(reason).or_default() += n;
    }
    let mut v: Vec<(String, usize)> = by_reason.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// The `p`th percentile of sorted durations (0 when there are none).
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = (sorted.len() - 1) * p.min(100) / 100;
    sorted[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_sorted_durations() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50), Duration::from_millis(50));
        assert_eq!(percentile(&d, 100), Duration::from_millis(100));
        assert_eq!(percentile(&[], 99), Duration::ZERO);
    }

    #[test]
    fn dead_reasons_group_errors_that_differ_in_numbers() {
        let errors = HashMap::from([
            ("delivered 5 times (max 5)".to_owned(), 3),
            ("delivered 12 times (max 5)".to_owned(), 2),
            ("boom".to_owned(), 4),
        ]);
        assert_eq!(
            dead_reasons(&errors),
            vec![
                ("delivered N times (max N)".to_owned(), 5),
                ("boom".to_owned(), 4)
            ]
        );
    }
}
