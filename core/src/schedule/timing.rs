//! When a schedule fires: fire times of a cron expression in a time zone
//! (croner on jiff).

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::ScheduleError;

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
