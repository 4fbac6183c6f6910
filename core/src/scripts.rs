//! The Lua scripts, each with the shared prelude prepended. Every script
//! names every key it touches in KEYS, so all work on Redis Cluster.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

/// XACK + XDEL of finished entries, counting them as processed.
pub static ACK: LazyLock<Script> = script!("ack.lua");
/// Fenced retry-or-dead-letter of a failed attempt.
pub static FAIL: LazyLock<Script> = script!("fail.lua");
/// Store a job for later (delayed enqueue).
pub static SCHEDULE: LazyLock<Script> = script!("schedule.lua");
/// Move due delayed jobs to the ready stream.
pub static PROMOTE: LazyLock<Script> = script!("promote.lua");
/// Renew the leases of entries this consumer still owns.
pub static RENEW: LazyLock<Script> = script!("renew.lua");
/// Claim expired leases; dead-letter entries past max deliveries.
pub static RECLAIM: LazyLock<Script> = script!("reclaim.lua");
/// Hand owned entries back to the ready stream at once.
pub static RELEASE: LazyLock<Script> = script!("release.lua");
/// Replay dead-lettered entries to the ready stream as fresh first attempts.
pub static DEAD_REPLAY: LazyLock<Script> = script!("dead_replay.lua");
/// Re-add stuck pending entries (still idle past a minimum) to the ready stream.
pub static REQUEUE: LazyLock<Script> = script!("requeue.lua");
/// Move delayed jobs to the ready stream now, by id.
pub static RUN_NOW: LazyLock<Script> = script!("run_now.lua");
/// Remove a consumer from the group, atomically with its safety checks.
pub static LEAVE: LazyLock<Script> = script!("leave.lua");
/// A consumer's own pending entries with their fields, without raising
/// their delivery count.
pub static OWN_PENDING: LazyLock<Script> = script!("own_pending.lua");
/// Pause a queue, recording when (server time) and why.
pub static PAUSE: LazyLock<Script> = script!("pause.lua");
/// Relay outbox rows to a queue exactly once: each row is added (or
/// scheduled) only if its mark is not in the queue's relayed set.
pub static RELAY: LazyLock<Script> = script!("relay.lua");
/// Heartbeat and pause check of a worker's upkeep tick, in one call.
pub static BEAT: LazyLock<Script> = script!("beat.lua");
/// Claim a schedule's due fire times (compare-and-set of its cursor) and
/// enqueue their jobs, in one step: one enqueue per fire time.
pub static CRON: LazyLock<Script> = script!("cron.lua");
/// Enqueue jobs with unique keys: check and take each key's lock in the
/// same step (duplicate, debounce, or new).
pub static UNIQUE: LazyLock<Script> = script!("unique.lua");
/// Cancel one job: remove it (delayed or not yet delivered) or mark it
/// (running) for its worker.
pub static CANCEL: LazyLock<Script> = script!("cancel.lua");
/// End a cancelled attempt: fenced ack, its mark and unique lock dropped.
pub static CANCELLED: LazyLock<Script> = script!("cancelled.lua");
/// Read new entries across the lanes of a queue, highest lane first, up to
/// a count (the non-blocking half of a multi-lane fetch).
pub static TAKE: LazyLock<Script> = script!("take.lua");
