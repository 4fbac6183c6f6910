//! Partitions: one queue spread over several hash tags, so that on a Redis
//! Cluster its load lands on several masters. A partition of queue `q` is
//! the queue `q#<label>` (keys `millrace:{q#<label>}:...`), complete with
//! its lanes, delayed set, dead letters and history; the queue `q` itself
//! stays readable (jobs enqueued before it was partitioned, schedules, the
//! outbox). The queue's [`Layout`] (which labels, in which order) is stored
//! in `millrace:{q}:partitions`, set by an operator (`millrace
//! partitions`), read by producers (cached a few seconds) and workers (at
//! every reclaim round). On one server the labels are `0..N`; on a Redis
//! Cluster they are picked so every master serves as many partitions as
//! any other ([`layout::spread`]).
//!
//! A job enqueued with a key goes to the partition its key hashes to
//! ([`partition_of`]: FNV-1a, fixed forever, gives a position in the
//! layout), so jobs of one key keep their order; a job without one goes
//! round-robin.

pub mod layout;

pub use layout::{Layout, MAX_LABEL};

use crate::slot::read_slot_map;

use redis::aio::ConnectionLike;

use crate::error::{ConfigError, QueueError};
use crate::queue::Queue;

/// Most partitions a queue may have.
pub const MAX_PARTITIONS: u32 = 256;

/// The queue name of the partition labelled `label` of `queue`:
/// `queue#label`.
pub fn partition_name(queue: &str, label: u32) -> String {
    format!("{queue}#{label}")
}

/// Splits a queue name into its queue and partition label: `orders#3` →
/// (`orders`, Some(3)); a name without a partition suffix (a label below
/// [`MAX_LABEL`] without leading zeros) → (name, None).
pub fn split_name(name: &str) -> (&str, Option<u32>) {
    match name.rsplit_once('#') {
        Some((base, i)) if !base.is_empty() => match i.parse::<u32>() {
            Ok(n) if n < MAX_LABEL && i == n.to_string() => (base, Some(n)),
            _ => (name, None),
        },
        _ => (name, None),
    }
}

/// The position (of `n`, in the queue's [`Layout`]) of the partition a job
/// with `key` goes to. The function is part of the protocol: FNV-1a 64 of
/// the key's bytes, modulo `n`; changing it would break the per-key order
/// of queues already in use.
pub fn partition_of(key: &str, n: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    u32::try_from(h % u64::from(n.max(1))).unwrap_or(0)
}

/// Checks a partition count: 1 to [`MAX_PARTITIONS`].
pub fn validate_partitions(n: u32) -> Result<(), ConfigError> {
    if (1..=MAX_PARTITIONS).contains(&n) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "invalid partition count {n}: use 1 to {MAX_PARTITIONS}"
        )))
    }
}

impl Queue {
    /// The queue's partition layout ([`Layout::single`] when it was never
    /// partitioned, or when the stored value does not parse).
    pub async fn layout<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<Layout, QueueError> {
        let v: Option<String> = redis::cmd("GET")
            .arg(&self.keys().partitions)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("partitions"))?;
        Ok(v.and_then(|v| Layout::parse(&v))
            .unwrap_or_else(Layout::single))
    }

    /// Sets the queue's partition count and returns the new layout:
    /// producers use it within a few seconds, workers at their next reclaim
    /// round. On a Redis Cluster the partitions are placed so every master
    /// serves as many as any other (from `CLUSTER SLOTS` now; setting the
    /// same count again after a resharding rebalances); on one server they
    /// are `0..n`. Partition queues themselves cannot be partitioned.
    pub async fn set_partitions<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        n: u32,
    ) -> Result<Layout, QueueError> {
        validate_partitions(n)?;
        if split_name(self.name()).1.is_some() {
            return Err(QueueError::Config(ConfigError::Invalid(format!(
                "{} is a partition: partition the queue {} instead",
                self.name(),
                split_name(self.name()).0
            ))));
        }
        let layout = match read_slot_map(conn).await? {
            Some(map) => layout::spread(self.name(), n, &self.layout(conn).await?, &map),
            None => Layout::plain(n),
        };
        redis::cmd("SET")
            .arg(&self.keys().partitions)
            .arg(layout.stored())
            .query_async::<()>(conn)
            .await
            .map_err(QueueError::redis("partitions"))?;
        Ok(layout)
    }

    /// The labels of the partitions of this queue that may hold jobs: those
    /// of its layout (none when not partitioned), and every partition in
    /// the registry (a count lowered leaves its old partitions there).
    pub async fn partitions_in_use<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<Vec<u32>, QueueError> {
        let layout = self.layout(conn).await?;
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&self.keys().registry)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("partitions"))?;
        let mut found: std::collections::BTreeSet<u32> = if layout.is_partitioned() {
            layout.labels().iter().copied().collect()
        } else {
            Default::default()
        };
        found.extend(names.iter().filter_map(|name| match split_name(name) {
            (base, Some(i)) if base == self.name() => Some(i),
            _ => None,
        }));
        Ok(found.into_iter().collect())
    }

    /// The partition labelled `label` of this queue (see [`Layout::label`]
    /// for the label at a position), with the same prefix and history
    /// settings.
    pub fn partition(&self, label: u32) -> Result<Queue, ConfigError> {
        let (prefix, _) = self
            .keys()
            .registry
            .rsplit_once(':')
            .unwrap_or((crate::keys::DEFAULT_PREFIX, ""));
        Ok(
            Queue::with_prefix(prefix, &partition_name(self.name(), label))?
                .with_history(self.history()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_only_on_a_partition_suffix() {
        assert_eq!(split_name("orders#3"), ("orders", Some(3)));
        assert_eq!(split_name("orders"), ("orders", None));
        assert_eq!(split_name("a#b"), ("a#b", None));
        assert_eq!(split_name("a#03"), ("a#03", None));
        assert_eq!(split_name("#3"), ("#3", None));
        assert_eq!(split_name("a#999"), ("a", Some(999)));
        assert_eq!(split_name("a#65536"), ("a#65536", None));
        assert_eq!(partition_name("orders", 7), "orders#7");
    }

    #[test]
    fn keys_hash_to_a_fixed_partition() {
        // Fixed values: the function must never change.
        assert_eq!(
            partition_of("customer-42", 8),
            partition_of("customer-42", 8)
        );
        assert_eq!(partition_of("", 8), (0xcbf2_9ce4_8422_2325u64 % 8) as u32);
        assert_eq!(partition_of("anything", 1), 0);
        let mut seen = [0u32; 8];
        for i in 0..8000 {
            seen[partition_of(&format!("k{i}"), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn counts_are_bounded() {
        assert!(validate_partitions(0).is_err());
        assert!(validate_partitions(1).is_ok());
        assert!(validate_partitions(MAX_PARTITIONS + 1).is_err());
    }
}
