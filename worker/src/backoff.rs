//! Reconnect backoff: doubling from 50 ms up to 5 s, with jitter.

use std::time::Duration;

/// Exponential backoff for retrying Redis after an error.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The next pause, longer after each failure.
    pub fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ms = (50u64 << self.failures.min(7)).min(5_000);
        Duration::from_millis(ms / 2 + fastrand::u64(0..=ms / 2))
    }

    /// Back to the shortest pause after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}
