//! What a worker does next for a schedule: wait for the next fire, or
//! claim the due ones as the missed-fire policy says.

use std::time::Duration;

use super::{MAX_CATCH_UP, Missed, Timing};

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
