//! # millrace-jobs
//!
//! The typed jobs that the `millrace-worker` binary runs and that the demo,
//! the benchmark and the chaos run enqueue. Each is a serde type with a
//! stable name (see [`millrace_core::Job`]) and an async handler function
//! `fn(job, JobContext) -> Result<(), JobError>`: the shape to copy for
//! your own jobs.
//!
//! ```
//! use millrace_core::Job;
//! use millrace_jobs::Sleep;
//! assert_eq!(Sleep::NAME, "sleep");
//! ```

use std::time::Duration;

use millrace_core::{Job, JobContext, JobError, RetryPolicy};
use serde::{Deserialize, Serialize};

/// Retry policy of the catalogue's jobs: short delays so demos and tests
/// see retries within a second (100 ms, 200 ms, 400 ms ...), 5 attempts.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy::exponential(5)
        .base(Duration::from_millis(100))
        .max_delay(Duration::from_secs(5))
        .jitter(0.1)
}

/// Does nothing: the unit of benchmark throughput.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Noop {
    /// Free text, ignored; lets benchmarks size the payload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pad: String,
}

impl Job for Noop {
    const NAME: &'static str = "noop";
    fn retry() -> RetryPolicy {
        quick_retry()
    }
}

/// Handler of [`Noop`].
pub async fn noop(_job: Noop, _ctx: JobContext) -> Result<(), JobError> {
    Ok(())
}

/// Sleeps `ms` milliseconds, stopping early (as a failure) when cancelled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sleep {
    /// How long to sleep.
    pub ms: u64,
}

impl Job for Sleep {
    const NAME: &'static str = "sleep";
    fn retry() -> RetryPolicy {
        quick_retry()
    }
}

/// Handler of [`Sleep`].
pub async fn sleep(job: Sleep, ctx: JobContext) -> Result<(), JobError> {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(job.ms)) => Ok(()),
        () = ctx.cancel.cancelled() => Err(JobError::retry("cancelled while sleeping")),
    }
}

/// Fails (retryably) with probability `fail_percent`/100, else succeeds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flaky {
    /// Chance of failure, 0 to 100.
    pub fail_percent: u8,
}

impl Job for Flaky {
    const NAME: &'static str = "flaky";
    fn retry() -> RetryPolicy {
        quick_retry()
    }
}

/// Handler of [`Flaky`].
pub async fn flaky(job: Flaky, ctx: JobContext) -> Result<(), JobError> {
    if fastrand::u8(0..100) < job.fail_percent {
        return Err(JobError::retry(format!(
            "flaky failure on attempt {} ({}% chance)",
            ctx.attempt, job.fail_percent
        )));
    }
    Ok(())
}

/// Fails until attempt `succeed_on`, then succeeds; with `permanent` it
/// fails permanently (straight to the dead-letter stream) instead.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fail {
    /// The attempt that succeeds (0 = never).
    #[serde(default)]
    pub succeed_on: u32,
    /// Fail with a permanent error.
    #[serde(default)]
    pub permanent: bool,
    /// The error text.
    #[serde(default = "default_fail_message")]
    pub message: String,
}

fn default_fail_message() -> String {
    "failed on purpose".to_owned()
}

impl Job for Fail {
    const NAME: &'static str = "fail";
    fn retry() -> RetryPolicy {
        quick_retry()
    }
}

/// Handler of [`Fail`].
pub async fn fail(job: Fail, ctx: JobContext) -> Result<(), JobError> {
    if job.permanent {
        return Err(JobError::permanent(job.message));
    }
    if job.succeed_on != 0 && ctx.attempt >= job.succeed_on {
        return Ok(());
    }
    Err(JobError::retry(format!(
        "{} (attempt {})",
        job.message, ctx.attempt
    )))
}

/// Panics inside the handler: the worker must count it as a failed attempt.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Panic {
    /// The attempt that succeeds instead (0 = never).
    #[serde(default)]
    pub succeed_on: u32,
}

impl Job for Panic {
    const NAME: &'static str = "panic";
    fn retry() -> RetryPolicy {
        quick_retry()
    }
}

/// Handler of [`Panic`].
#[allow(clippy::panic, reason = "panicking is this job's purpose")]
pub async fn panic(job: Panic, ctx: JobContext) -> Result<(), JobError> {
    if job.succeed_on != 0 && ctx.attempt >= job.succeed_on {
        return Ok(());
    }
    panic!("panic job, attempt {}", ctx.attempt);
}

/// Aborts the whole worker process (as a segfault or OOM kill would) with
/// probability `percent`/100: for reclaim and max-deliveries tests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Crash {
    /// Chance of aborting, 0 to 100.
    pub percent: u8,
    /// Sleep this long first, so a crash lands mid-job.
    #[serde(default)]
    pub after_ms: u64,
}

impl Job for Crash {
    const NAME: &'static str = "crash";
    fn retry() -> RetryPolicy {
        quick_retry()
    }
}

/// Handler of [`Crash`].
pub async fn crash(job: Crash, ctx: JobContext) -> Result<(), JobError> {
    if job.after_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.after_ms)).await;
    }
    if fastrand::u8(0..100) < job.percent {
        tracing::error!(job_id = %ctx.job_id, "crash job: aborting the process");
        std::process::abort();
    }
    Ok(())
}
