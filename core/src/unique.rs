//! Unique jobs: a key that at most one live job holds at a time, in one of
//! three modes (while live, throttle, debounce), and what an enqueue with a
//! key reports. The lock lives in the queue's `unique` hash with an expiry
//! in `unique:ttl` (`lua/unique.lua` takes it; ack, dead-letter and cancel
//! release it through `release_unique` in `lua/prelude.lua`).

use std::time::Duration;

use crate::error::ConfigError;
use crate::job::JobId;

/// How long a while-live lock lasts at most when its job never ends (a
/// crash that loses the job's outcome): 24 hours.
pub const DEFAULT_UNIQUE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest unique key accepted, in bytes.
pub const MAX_UNIQUE_KEY: usize = 1024;

/// How a unique key holds off other jobs with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UniqueMode {
    /// Until the job succeeds, is dead-lettered or is cancelled (at most its
    /// TTL): a later enqueue is a duplicate meanwhile.
    WhileLive,
    /// For the TTL after the first enqueue, whatever the job's outcome: at
    /// most one job per key per TTL.
    Throttle,
    /// While the job waits in the delayed set, a later enqueue replaces its
    /// payload and pushes it back to run `window` after that enqueue; once
    /// it is ready or running, a later enqueue makes a new job.
    Debounce,
}

impl UniqueMode {
    /// The mode's letter in the lock (`w`, `t`, `d`).
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::WhileLive => "w",
            Self::Throttle => "t",
            Self::Debounce => "d",
        }
    }
}

/// A unique key and its mode: see [`UniqueMode`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Unique {
    /// The key, scoped to the queue (e.g. `invoice:42`).
    pub key: String,
    /// How it dedupes.
    pub mode: UniqueMode,
    /// While live: the longest the lock may outlive a job that never ends
    /// ([`DEFAULT_UNIQUE_TTL`] by default). Throttle: the window. Debounce:
    /// the window (the job runs this long after the latest enqueue).
    pub ttl: Duration,
}

impl Unique {
    /// A key held until the job succeeds, is dead-lettered or is cancelled,
    /// for at most [`DEFAULT_UNIQUE_TTL`] (change it with
    /// [`ttl`](Self::ttl)).
    pub fn while_live(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            mode: UniqueMode::WhileLive,
            ttl: DEFAULT_UNIQUE_TTL,
        }
    }

    /// A key held for `window` after the first enqueue, whatever happens to
    /// the job.
    pub fn throttle(key: impl Into<String>, window: Duration) -> Self {
        Self {
            key: key.into(),
            mode: UniqueMode::Throttle,
            ttl: window,
        }
    }

    /// A job that runs `window` after the latest enqueue of `key`: each
    /// enqueue while it waits replaces its payload and pushes it back.
    pub fn debounce(key: impl Into<String>, window: Duration) -> Self {
        Self {
            key: key.into(),
            mode: UniqueMode::Debounce,
            ttl: window,
        }
    }

    /// Sets the TTL (see [`ttl`](field@Self::ttl)).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Checks the key (1 to 1,024 bytes) and the TTL (at least 1 ms).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.key.is_empty() || self.key.len() > MAX_UNIQUE_KEY {
            return Err(ConfigError::Invalid(format!(
                "unique key must be 1 to {MAX_UNIQUE_KEY} bytes (got {})",
                self.key.len()
            )));
        }
        if self.ttl < Duration::from_millis(1) {
            return Err(ConfigError::Invalid(format!(
                "unique ttl ({:?}) must be at least 1ms",
                self.ttl
            )));
        }
        Ok(())
    }
}

impl From<&str> for Unique {
    /// A while-live key.
    fn from(key: &str) -> Self {
        Self::while_live(key)
    }
}

impl From<String> for Unique {
    /// A while-live key.
    fn from(key: String) -> Self {
        Self::while_live(key)
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnqueueStatus {
    /// A new job was enqueued.
    New,
    /// A live job holds the unique key: nothing was enqueued.
    Duplicate,
    /// A debounce job waiting with this key took this payload and due time.
    Debounced,
}

/// The job an enqueue stands for, and whether it is new.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Enqueued {
    /// The new job's id, or the existing job's for a duplicate or a
    /// debounce.
    pub id: JobId,
    /// What happened.
    pub status: EnqueueStatus,
}

impl Enqueued {
    /// An outcome of `status` for job `id`.
    pub fn new(id: JobId, status: EnqueueStatus) -> Self {
        Self { id, status }
    }

    /// True when a live job held the key and nothing was enqueued.
    pub fn is_duplicate(&self) -> bool {
        self.status == EnqueueStatus::Duplicate
    }

    /// True when a new job was enqueued.
    pub fn is_new(&self) -> bool {
        self.status == EnqueueStatus::New
    }
}

/// A unique lock to release when its job succeeds (passed to
/// [`Queue::ack_finished`](crate::Queue::ack_finished) in an `Acked`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UniqueLock {
    /// The unique key (the envelope's `unique` field).
    pub key: String,
    /// The job that holds it.
    pub job_id: String,
}

impl UniqueLock {
    /// The lock on `key` held by job `job_id`.
    pub fn new(key: impl Into<String>, job_id: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            job_id: job_id.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_and_ttls_are_refused() {
        assert!(Unique::while_live("a").validate().is_ok());
        let err = Unique::while_live("").validate().unwrap_err().to_string();
        assert_eq!(err, "unique key must be 1 to 1024 bytes (got 0)");
        assert!(Unique::while_live("x".repeat(1025)).validate().is_err());
        let err = Unique::throttle("a", Duration::ZERO)
            .validate()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "unique ttl (0ns) must be at least 1ms");
    }
}
