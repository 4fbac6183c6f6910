//! The keyspace: every Redis key Millrace uses, derived from a prefix and a
//! queue name. All keys of one queue share the hash tag `{queue}` so that
//! multi-key scripts run on one Redis Cluster slot.

use crate::error::ConfigError;
use crate::lane::Priority;

/// Default key prefix (`millrace:{queue}:...`).
pub const DEFAULT_PREFIX: &str = "millrace";
/// Default consumer group name on every ready stream.
pub const DEFAULT_GROUP: &str = "millrace";
/// Longest queue name accepted.
pub const MAX_QUEUE_NAME: usize = 128;

/// The keys of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keys {
    /// The queue's name.
    pub queue: String,
    /// Stream of ready and in-flight jobs, with one consumer group.
    pub stream: String,
    /// Sorted set: job id → due time (unix ms) of scheduled jobs and retries.
    pub delayed: String,
    /// Hash: job id → envelope (JSON array of fields) of delayed jobs.
    pub jobs: String,
    /// Stream of dead-lettered jobs (no group), trimmed by its retention.
    pub dead: String,
    /// Sorted set: consumer name → last heartbeat (unix ms).
    pub workers: String,
    /// String key whose presence pauses the queue.
    pub paused: String,
    /// Hash of counters: processed, retried, dead.
    pub stats: String,
    /// Set of all known queue names (shared by every queue under the prefix).
    pub registry: String,
    /// Hash: entry id → `<attempt>:<last error>` of entries retried in
    /// place (no backoff: the stream entry keeps its first attempt's
    /// fields).
    pub tries: String,
    /// Sorted set: outbox row mark → time relayed (unix ms): the outbox
    /// relay's idempotency record (`relay.lua`).
    pub relayed: String,
    /// Hash of the queue's schedules (periodic jobs): per schedule name, its
    /// definition (`def:<name>`), its cursor (`last:<name>`, fire times up
    /// to it are accounted for), its latest enqueued fire (`fired:<name>`)
    /// and its pause flag (`paused:<name>`).
    pub schedules: String,
    /// Hash: unique key → `<mode>|<job id>` of the job holding it (`w`
    /// while live, `t` throttle, `d` debounce): the unique-job locks.
    pub unique: String,
    /// Sorted set: unique key → expiry (unix ms, server time) of its lock
    /// in [`unique`](Self::unique); every lock has one.
    pub unique_ttl: String,
    /// Sorted set: entry id → expiry (unix ms, server time) of a cancel
    /// mark on a running job, seen by its worker's lease renewal.
    pub cancel: String,
    /// Capped stream of finished jobs (succeeded, dead, cancelled): one
    /// entry per outcome, its id the finish time (see `history.rs`).
    pub history: String,
    /// Prefix of the per-job result keys: `<result_prefix><job id>`, a
    /// string with a TTL (see [`Keys::result`]).
    pub result_prefix: String,
    /// Set of the queue's lanes other than `default` that producers have
    /// written to (`high`, `low`): what workers read.
    pub lanes: String,
    /// String: the queue's partition layout, `N` or `l0,l1,…` (see
    /// `partition/layout.rs`); absent means unpartitioned.
    pub partitions: String,
    /// The lane these keys are of: [`stream`](Self::stream),
    /// [`delayed`](Self::delayed), [`tries`](Self::tries) and
    /// [`cancel`](Self::cancel) (all keyed by entry ids, unique per stream
    /// only) are that lane's; every other key is the queue's.
    pub lane: Priority,
}

impl Keys {
    /// The keys of `queue` under `prefix`; fails on an invalid queue name.
    pub fn new(prefix: &str, queue: &str) -> Result<Self, ConfigError> {
        validate_queue_name(queue)?;
        let base = format!("{prefix}:{{{queue}}}");
        Ok(Self {
            queue: queue.to_owned(),
            stream: format!("{base}:stream"),
            delayed: format!("{base}:delayed"),
            jobs: format!("{base}:jobs"),
            dead: format!("{base}:dead"),
            workers: format!("{base}:workers"),
            paused: format!("{base}:paused"),
            stats: format!("{base}:stats"),
            registry: registry_key(prefix),
            relayed: format!("{base}:relayed"),
            tries: format!("{base}:tries"),
            schedules: format!("{base}:schedules"),
            unique: format!("{base}:unique"),
            unique_ttl: format!("{base}:unique:ttl"),
            cancel: format!("{base}:cancel"),
            history: format!("{base}:history"),
            result_prefix: format!("{base}:result:"),
            lanes: format!("{base}:lanes"),
            partitions: format!("{base}:partitions"),
            lane: Priority::Default,
        })
    }

    /// The keys of lane `lane` of this queue: its own ready stream, delayed
    /// set and retry counts (`millrace:{q}:high:stream`, ...), the queue's
    /// other keys unchanged. The default lane's keys are the queue's own.
    #[must_use]
    pub fn for_lane(&self, lane: Priority) -> Keys {
        let mut k = self.clone();
        let default = self.for_default_lane();
        k.lane = lane;
        k.stream = lane_key(&default.stream, lane);
        k.delayed = lane_key(&default.delayed, lane);
        k.tries = lane_key(&default.tries, lane);
        k.cancel = lane_key(&default.cancel, lane);
        k
    }

    /// The keys of the queue's default lane.
    fn for_default_lane(&self) -> Keys {
        if self.lane == Priority::Default {
            return self.clone();
        }
        let mut k = self.clone();
        k.lane = Priority::Default;
        k.stream = default_key(&self.stream, self.lane);
        k.delayed = default_key(&self.delayed, self.lane);
        k.tries = default_key(&self.tries, self.lane);
        k.cancel = default_key(&self.cancel, self.lane);
        k
    }

    /// The key of job `job_id`'s stored result (`millrace:{q}:result:<id>`).
    pub fn result(&self, job_id: &str) -> String {
        format!("{}{job_id}", self.result_prefix)
    }
}

/// `millrace:{q}:stream` → `millrace:{q}:<lane>:stream` (unchanged for
/// the default lane).
fn lane_key(key: &str, lane: Priority) -> String {
    match (lane.segment(), key.rsplit_once(':')) {
        (Some(seg), Some((base, last))) => format!("{base}:{seg}:{last}"),
        _ => key.to_owned(),
    }
}

/// The inverse of [`lane_key`].
fn default_key(key: &str, lane: Priority) -> String {
    match lane.segment() {
        Some(seg) => key.replacen(&format!(":{seg}:"), ":", 1),
        None => key.to_owned(),
    }
}

/// The key of the set of known queues under `prefix`.
pub fn registry_key(prefix: &str) -> String {
    format!("{prefix}:queues")
}

/// Checks a queue name: 1 to 128 characters, none of them whitespace, `{`,
/// `}` or `:`.
pub fn validate_queue_name(queue: &str) -> Result<(), ConfigError> {
    let bad = queue.is_empty()
        || queue.len() > MAX_QUEUE_NAME
        || queue
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | ':'));
    if bad {
        return Err(ConfigError::Invalid(format!(
            "invalid queue name {queue:?}: use 1 to {MAX_QUEUE_NAME} characters without spaces, ':', '{{' or '}}'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_queue_hash_tag() {
        let k = Keys::new("millrace", "billing").unwrap();
        assert_eq!(k.stream, "millrace:{billing}:stream");
        assert_eq!(k.delayed, "millrace:{billing}:delayed");
        assert_eq!(k.dead, "millrace:{billing}:dead");
        assert_eq!(k.registry, "millrace:queues");
        assert_eq!(k.history, "millrace:{billing}:history");
        assert_eq!(k.result("j1"), "millrace:{billing}:result:j1");
        assert_eq!(k.lanes, "millrace:{billing}:lanes");
    }

    #[test]
    fn lanes_have_their_own_stream_delayed_and_tries() {
        let k = Keys::new("millrace", "billing").unwrap();
        let high = k.for_lane(Priority::High);
        assert_eq!(high.stream, "millrace:{billing}:high:stream");
        assert_eq!(high.delayed, "millrace:{billing}:high:delayed");
        assert_eq!(high.tries, "millrace:{billing}:high:tries");
        assert_eq!(high.cancel, "millrace:{billing}:high:cancel");
        assert_eq!(high.dead, k.dead);
        assert_eq!(high.stats, k.stats);
        let low = high.for_lane(Priority::Low);
        assert_eq!(low.stream, "millrace:{billing}:low:stream");
        assert_eq!(low.for_lane(Priority::Default), k);
    }

    #[test]
    fn bad_queue_names_are_refused() {
        for q in ["", "a b", "a{b", "x}", "a:b", &"x".repeat(129)] {
            let err = Keys::new("millrace", q).unwrap_err().to_string();
            assert!(err.contains("invalid queue name"), "{q}: {err}");
        }
    }
}
