//! Periodic jobs (feature `schedule`): a [`Schedule`] is a cron expression
//! in a time zone, a job, a queue and a policy for fires missed while no
//! worker ran. Fire times are computed here, in Rust ([`Timing`], with
//! croner on jiff); every worker runs every schedule, and each fire is
//! claimed and enqueued by one script (`cron.lua`, [`store::claim`]), so
//! each fire time is enqueued exactly once whatever the number of workers.
//!
//! ```
//! use millrace_core::schedule::{Missed, Schedule};
//! # #[derive(serde::Serialize, serde::Deserialize)]
//! # struct SendDigest { team: u32 }
//! # impl millrace_core::Job for SendDigest { const NAME: &'static str = "send_digest"; }
//! # fn main() -> Result<(), millrace_core::schedule::ScheduleError> {
//! let digest = Schedule::cron("0 0 8 * * MON-FRI")?
//!     .timezone("Europe/Paris")?
//!     .job(SendDigest { team: 7 })
//!     .missed(Missed::Once);
//! # let _ = digest; Ok(()) }
//! ```

mod plan;
pub mod store;
mod timing;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::job::Job;

pub use plan::{Claim, Plan, plan};
pub use timing::{Due, Timing};

/// Most fire times one claim enqueues (policy [`Missed::All`] after a long
/// downtime): the latest ones are kept, older ones are dropped and logged.
pub const MAX_CATCH_UP: usize = 100;
/// How late a fire may be claimed and still count as on time rather than
/// missed. Defaults for [`Schedule::grace`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Longest schedule name accepted.
pub const MAX_NAME: usize = 128;

/// What a schedule does with fire times that passed while no worker ran
/// (found later than its grace, [`Schedule::grace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Missed {
    /// Drop them: the schedule goes on from the next fire. The default.
    #[default]
    Skip,
    /// Enqueue one job for all of them (at the latest missed fire time).
    Once,
    /// Enqueue one job per missed fire, at most [`MAX_CATCH_UP`] (the
    /// latest) per catch-up.
    All,
}

impl FromStr for Missed {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(Self::Skip),
            "once" => Ok(Self::Once),
            "all" => Ok(Self::All),
            other => Err(ScheduleError::Missed(other.to_owned())),
        }
    }
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Skip => "skip",
            Self::Once => "once",
            Self::All => "all",
        })
    }
}

/// A schedule was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression does not parse, or never fires.
    #[error("invalid cron expression {expr:?}: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// Why, in croner's words.
        reason: String,
    },
    /// The time zone is not in the tz database.
    #[error(
        "unknown time zone {0:?}: use an IANA name such as Europe/Paris, America/New_York or UTC"
    )]
    TimeZone(String),
    /// The schedule name is empty, too long or holds a reserved character.
    #[error(
        "invalid schedule name {0:?}: use 1 to 128 characters without spaces, '=', '@', '[' or ']'"
    )]
    Name(String),
    /// The missed-fire policy is not one of `skip`, `once`, `all`.
    #[error("invalid missed-fire policy {0:?}: use skip, once or all")]
    Missed(String),
    /// Something else about one schedule (no job, a payload that does not
    /// serialize, a duplicate name).
    #[error("schedule {schedule:?}: {reason}")]
    Invalid {
        /// The schedule's name (or its cron expression when it has none).
        schedule: String,
        /// What is wrong.
        reason: String,
    },
}

/// Checks a schedule name: 1 to 128 characters, no whitespace or control
/// characters, and none of `=` (the worker flag's separator), `@` (job ids
/// are `<name>@<fire ms>`), `[` or `]` (the flag's options).
pub fn validate_name(name: &str) -> Result<(), ScheduleError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '=' | '@' | '[' | ']'));
    if bad {
        return Err(ScheduleError::Name(name.to_owned()));
    }
    Ok(())
}

/// A periodic job, as written in code: see the [module docs](self). Errors
/// that only show once it is complete (no job, a payload that does not
/// serialize) are reported by [`Schedule::definition`] (the worker's
/// `build`).
#[derive(Debug, Clone)]
pub struct Schedule {
    timing: Timing,
    name: Option<String>,
    job: Option<String>,
    payload: Result<String, String>,
    job_queue: Option<String>,
    queue: Option<String>,
    missed: Missed,
    grace: Duration,
}

impl Schedule {
    /// A schedule firing on `expr` in UTC (5 fields, or 6 with seconds
    /// first: `0 */5 * * * *` is every five minutes on the minute).
    pub fn cron(expr: &str) -> Result<Self, ScheduleError> {
        Ok(Self {
            timing: Timing::new(expr, "UTC")?,
            name: None,
            job: None,
            payload: Ok(String::new()),
            job_queue: None,
            queue: None,
            missed: Missed::default(),
            grace: DEFAULT_GRACE,
        })
    }

    /// Reads the cron expression in time zone `tz` (an IANA name such as
    /// `Europe/Paris`) instead of UTC.
    pub fn timezone(mut self, tz: &str) -> Result<Self, ScheduleError> {
        self.timing = Timing::new(self.timing.expr(), tz)?;
        Ok(self)
    }

    /// The job each fire enqueues (its payload serialized now; its queue is
    /// `J::QUEUE` unless [`queue`](Self::queue) says otherwise).
    #[must_use]
    pub fn job<J: Job>(mut self, job: J) -> Self {
        self.job = Some(J::NAME.to_owned());
        self.payload = serde_json::to_string(&job).map_err(|e| e.to_string());
        self.job_queue = Some(J::QUEUE.to_owned());
        self
    }

    /// The job each fire enqueues, by name with a JSON payload (for jobs
    /// known by name only, as the worker binary's `--schedule` flag). Its
    /// queue is the registered handler's unless [`queue`](Self::queue)
    /// says otherwise.
    #[must_use]
    pub fn job_named(mut self, name: impl Into<String>, payload: impl Into<String>) -> Self {
        let payload = payload.into();
        self.job = Some(name.into());
        self.payload = serde_json::from_str::<serde_json::Value>(&payload)
            .map(|_| payload)
            .map_err(|e| format!("payload is not JSON: {e}"));
        self.job_queue = None;
        self
    }

    /// The schedule's stable name, unique per queue: the key of its cursor
    /// and pause flag, and the prefix of its job ids. Defaults to the job's
    /// name. Renaming a schedule starts it afresh.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The queue its jobs go to.
    #[must_use]
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// What to do with fires missed while no worker ran. Defaults to
    /// [`Missed::Skip`].
    #[must_use]
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// How late a fire may be claimed and still count as on time. Defaults
    /// to [`DEFAULT_GRACE`] (10 s).
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The schedule's name as it stands (given, else the job's).
    pub fn schedule_name(&self) -> Option<&str> {
        self.name.as_deref().or(self.job.as_deref())
    }

    /// The job's name, once set.
    pub fn job_name(&self) -> Option<&str> {
        self.job.as_deref()
    }

    /// The complete, checked definition. `handler_queue` gives the queue of
    /// a registered job by name (used for [`job_named`](Self::job_named)
    /// without an explicit queue).
    pub fn definition(
        &self,
        handler_queue: impl FnOnce(&str) -> Option<String>,
    ) -> Result<ScheduleDef, ScheduleError> {
        let label = self
            .schedule_name()
            .unwrap_or(self.timing.expr())
            .to_owned();
        let invalid = |reason: String| ScheduleError::Invalid {
            schedule: label.clone(),
            reason,
        };
        let Some(job) = self.job.clone() else {
            return Err(invalid("no job: call .job(..)".to_owned()));
        };
        let name = self.schedule_name().unwrap_or(&job).to_owned();
        validate_name(&name)?;
        let payload = self.payload.clone().map_err(&invalid)?;
        let queue = match (&self.queue, &self.job_queue) {
            (Some(q), _) | (None, Some(q)) => q.clone(),
            (None, None) => handler_queue(&job).ok_or_else(|| {
                invalid(format!(
                    "no job named `{job}` is registered here: register it or name the queue"
                ))
            })?,
        };
        crate::keys::validate_queue_name(&queue).map_err(|e| invalid(e.to_string()))?;
        Ok(ScheduleDef {
            name,
            queue,
            cron: self.timing.expr().to_owned(),
            tz: self.timing.tz_name().to_owned(),
            job,
            payload,
            missed: self.missed,
            grace_ms: crate::queue::duration_ms(self.grace),
        })
    }
}

/// A schedule as workers write it in Redis (`def:<name>` in the queue's
/// schedules hash, JSON) and the CLI reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduleDef {
    /// The schedule's name.
    pub name: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone's IANA name.
    pub tz: String,
    /// The job's name.
    pub job: String,
    /// The job's payload (JSON).
    pub payload: String,
    /// The missed-fire policy.
    pub missed: Missed,
    /// The grace in ms.
    pub grace_ms: u64,
}

impl ScheduleDef {
    /// The definition's timing (fails when the stored expression or zone
    /// is no longer valid, e.g. written by a newer version).
    pub fn timing(&self) -> Result<Timing, ScheduleError> {
        Timing::new(&self.cron, &self.tz)
    }

    /// The grace as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }

    /// The fields of each fired job but `id` (the script adds `id`,
    /// `enqueued_at`, `schedule` and `fire_at`).
    pub fn job_fields(&self) -> Vec<(&'static str, String)> {
        Envelope::new(String::new(), self.job.clone(), self.payload.clone())
            .fields()
            .into_iter()
            .filter(|(k, _)| *k != "id")
            .collect()
    }
}

#[cfg(test)]
mod tests;
