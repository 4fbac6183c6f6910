//! The relay's metric names, recorded through the `metrics` facade (the
//! worker binary exports them with its own; `dashboards/check.py static`
//! reads this file too). Labels are bounded: queue and error kind.

/// Outbox rows relayed to their queue, by queue.
pub const OUTBOX_RELAYED: &str = "millrace_outbox_relayed_total";
/// Seconds from a row's INSERT to its relay (so it includes the time until
/// its transaction committed).
pub const OUTBOX_RELAY_LAG: &str = "millrace_outbox_relay_lag_seconds";
/// Sampled: age in seconds of the oldest row not relayed yet (0 when none),
/// dead rows left out.
pub const OUTBOX_OLDEST_AGE: &str = "millrace_outbox_oldest_age_seconds";
/// Sampled: rows the relay refused for good (see `millrace outbox status`).
pub const OUTBOX_DEAD_ROWS: &str = "millrace_outbox_dead_rows";
/// Relay errors, by kind: `postgres` and `redis` (a batch that could not
/// run; nothing lost, retried with backoff), `row` (a row whose queue
/// failed; retried with backoff), `dead` (a row refused for good).
pub const OUTBOX_RELAY_ERRORS: &str = "millrace_outbox_relay_errors_total";
/// Unix time (seconds) of the relay's last successful batch or idle check.
pub const OUTBOX_LAST_RELAY: &str = "millrace_outbox_last_relay_timestamp_seconds";

/// Error kinds of [`OUTBOX_RELAY_ERRORS`].
pub const ERROR_KINDS: [&str; 4] = ["postgres", "redis", "row", "dead"];

/// Describes the relay's metrics and creates its unlabelled series at 0,
/// so dashboards and alerts see zeros before the first event.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(OUTBOX_RELAYED, "Outbox rows relayed to their queue.");
    describe_histogram!(
        OUTBOX_RELAY_LAG,
        Unit::Seconds,
        "Time from an outbox row's INSERT to its relay."
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest outbox row not relayed yet (0 when none)."
    );
    describe_gauge!(OUTBOX_DEAD_ROWS, "Outbox rows the relay refused for good.");
    describe_counter!(OUTBOX_RELAY_ERRORS, "Outbox relay errors by kind.");
    describe_gauge!(
        OUTBOX_LAST_RELAY,
        Unit::Seconds,
        "Unix time of the relay's last successful batch or idle check."
    );
    for kind in ERROR_KINDS {
        metrics::counter!(OUTBOX_RELAY_ERRORS, "kind" => kind).increment(0);
    }
    metrics::gauge!(OUTBOX_OLDEST_AGE).set(0.0);
    metrics::gauge!(OUTBOX_DEAD_ROWS).set(0.0);
}
