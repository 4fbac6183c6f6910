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

pub mod store;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::job::Job;

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

/// When a schedule fires: a cron expression (5 fields, or 6 with seconds
/// first, or 7 with a year last) read in an IANA time zone. Across a DST
/// change croner follows the Open Cron Pattern Specification: a fixed-time
/// job (e.g. `30 2 * * *`) whose wall time is skipped fires at the first
/// instant after the gap, and fires once (the first) when its wall time
/// repeats; interval jobs (`*/15 ...`) keep their rhythm through both.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    expr: String,
    tz: TimeZone,
    tz_name: String,
}

impl Timing {
    /// Parses `expr` and looks up `tz` (an IANA name, or `UTC`).
    pub fn new(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Cron {
                expr: expr.to_owned(),
                reason: e.to_string(),
            })?;
        let zone = TimeZone::get(tz).map_err(|_| ScheduleError::TimeZone(tz.to_owned()))?;
        let timing = Self {
            cron,
            expr: expr.to_owned(),
            tz: zone,
            tz_name: tz.to_owned(),
        };
        // A pattern such as `0 0 30 2 *` parses but never fires: look for
        // one fire from now (the local clock is good enough for that).
        let now = u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0);
        if timing.next_after(now).is_none() {
            return Err(ScheduleError::Cron {
                expr: expr.to_owned(),
                reason: "it never fires".to_owned(),
            });
        }
        Ok(timing)
    }

    /// The cron expression as given.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone's name as given.
    pub fn tz_name(&self) -> &str {
        &self.tz_name
    }

    fn zoned(&self, ms: u64) -> Option<Zoned> {
        let ms = i64::try_from(ms).ok()?;
        Some(
            Timestamp::from_millisecond(ms)
                .ok()?
                .to_zoned(self.tz.clone()),
        )
    }

    fn ms(z: &Zoned) -> Option<u64> {
        u64::try_from(z.timestamp().as_millisecond()).ok()
    }

    /// The first fire time strictly after `ms` (unix ms), if any.
    pub fn next_after(&self, ms: u64) -> Option<u64> {
        let z = self.zoned(ms)?;
        Self::ms(&self.cron.find_next_occurrence(&z, false).ok()?)
    }

    /// The last fire time at or before `ms`, if any.
    fn latest_at(&self, ms: u64) -> Option<u64> {
        let z = self.zoned(ms)?;
        Self::ms(&self.cron.find_previous_occurrence(&z, true).ok()?)
    }

    /// The fire times in `(cursor, now]`, ascending: all of them when at
    /// most `limit`, else the latest `limit` with `more` set.
    pub fn due(&self, cursor: u64, now: u64, limit: usize) -> Due {
        let limit = limit.max(1);
        let mut fires = self.forward(cursor, now, limit + 1);
        if fires.len() <= limit {
            return Due { fires, more: false };
        }
        // More than `limit` are due: step back `limit` fires from `now` to
        // find where the latest ones start, then list them forward (the
        // forward search defines fire times, DST rules included).
        let mut start = now;
        for _ in 0..limit {
            match self.latest_at(start) {
                Some(f) if f > cursor => start = f.saturating_sub(1),
                _ => break,
            }
        }
        fires = self.forward(start.max(cursor), now, 2 * limit + 2);
        let skip = fires.len().saturating_sub(limit);
        fires.drain(..skip);
        Due { fires, more: true }
    }

    /// Up to `max` fire times in `(from, to]`, ascending.
    fn forward(&self, from: u64, to: u64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut at = from;
        while out.len() < max {
            match self.next_after(at) {
                Some(f) if f <= to => {
                    out.push(f);
                    at = f;
                }
                _ => break,
            }
        }
        out
    }
}

/// Fire times due, from [`Timing::due`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Due {
    /// Due fire times, ascending.
    pub fires: Vec<u64>,
    /// More were due than the limit: `fires` holds the latest ones.
    pub more: bool,
}

/// What a worker does next for a schedule, from [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Plan {
    /// Claim: move the cursor and enqueue `fires`.
    Claim(Claim),
    /// Nothing is due: wait until `next` (unix ms, server clock), or
    /// forever when the schedule never fires again.
    Wait {
        /// The next fire time.
        next: Option<u64>,
    },
}

/// One claim of a schedule's due fires (the arguments of `cron.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claim {
    /// The cursor the plan started from (`None`: the schedule is new).
    pub expected: Option<u64>,
    /// The new cursor; `None` sets it to the server's now (a new schedule:
    /// it fires from its first fire time after now).
    pub cursor: Option<u64>,
    /// Fire times to enqueue, ascending.
    pub fires: Vec<u64>,
    /// Due fire times dropped by the missed-fire policy (or the catch-up
    /// bound); at least this many when `more` is set.
    pub dropped: u64,
    /// More fires were due than [`MAX_CATCH_UP`].
    pub more: bool,
}

/// Plans a schedule's next step from its cursor (`None` for a new
/// schedule) and the server's `now`: fires in `(cursor, now]` no older
/// than `grace` are on time and always enqueued; older ones are missed and
/// follow `missed`.
pub fn plan(
    timing: &Timing,
    missed: Missed,
    grace: Duration,
    cursor: Option<u64>,
    now: u64,
) -> Plan {
    let Some(cursor) = cursor else {
        return Plan::Claim(Claim {
            expected: None,
            cursor: None,
            fires: Vec::new(),
            dropped: 0,
            more: false,
        });
    };
    let due = timing.due(cursor, now, MAX_CATCH_UP);
    let Some(&latest) = due.fires.last() else {
        return Plan::Wait {
            next: timing.next_after(cursor.max(now)),
        };
    };
    let on_time_from = now.saturating_sub(crate::queue::duration_ms(grace));
    let split = due.fires.partition_point(|&f| f < on_time_from);
    let (late, on_time) = due.fires.split_at(split);
    let fires: Vec<u64> = match missed {
        Missed::All => due.fires.clone(),
        Missed::Skip => on_time.to_vec(),
        Missed::Once => late.last().into_iter().chain(on_time).copied().collect(),
    };
    Plan::Claim(Claim {
        expected: Some(cursor),
        cursor: Some(latest),
        dropped: (due.fires.len() - fires.len()) as u64,
        fires,
        more: due.more,
    })
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
        self.timing = Timing::new(&self.timing.expr, tz)?;
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
        let label = self.schedule_name().unwrap_or(&self.timing.expr).to_owned();
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
            cron: self.timing.expr.clone(),
            tz: self.timing.tz_name.clone(),
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
