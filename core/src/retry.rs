//! Retry policy: how many attempts a job gets and how long to wait between
//! them.
//!
//! After attempt `n` fails (n ≥ 1), the next attempt is due after
//!
//! ```text
//! raw(n)   = min(max_delay, base × factor^(n-1))
//! delay(n) = raw(n) × (1 − jitter × u),   u uniform in [0, 1)
//! ```
//!
//! so delays grow geometrically up to the cap, and jitter only ever shortens
//! a delay (a policy's cap is a true cap). The defaults (20 attempts, 2 s
//! base, factor 2, 1 h cap, 25 % jitter) spread about nine hours of retries.

use std::time::Duration;

use crate::envelope::MAX_ATTEMPTS_LIMIT;
use crate::error::ConfigError;

/// How a job is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included. Defaults to 20.
    pub max_attempts: u32,
    /// Delay after the first failure. Defaults to 2 s.
    pub base: Duration,
    /// Growth per attempt. Defaults to 2.0.
    pub factor: f64,
    /// Longest delay. Defaults to 1 h.
    pub max_delay: Duration,
    /// Fraction of a delay that may be taken off at random, 0.0 to 1.0.
    /// Defaults to 0.25.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 20,
            base: Duration::from_secs(2),
            factor: 2.0,
            max_delay: Duration::from_secs(3600),
            jitter: 0.25,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with the default delays and `max_attempts`.
    pub fn exponential(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            ..Self::default()
        }
    }

    /// One attempt only: any failure dead-letters the job.
    pub fn none() -> Self {
        Self::exponential(1)
    }

    /// Sets the first delay.
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the growth factor.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets the longest delay.
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets the jitter fraction (0.0 = none).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Checks the policy's values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return Err(ConfigError::Invalid(format!(
                "max_attempts ({}) must be from 1 to {MAX_ATTEMPTS_LIMIT}",
                self.max_attempts
            )));
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(ConfigError::Invalid(format!(
                "backoff factor ({}) must be at least 1.0",
                self.factor
            )));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::Invalid(format!(
                "jitter ({}) must be from 0.0 to 1.0",
                self.jitter
            )));
        }
        Ok(())
    }

    /// The delay before the next attempt after attempt `failed` failed,
    /// with `u` in [0, 1) choosing the jitter (see the module docs).
    pub fn delay_with(&self, failed: u32, u: f64) -> Duration {
        let exp = failed.saturating_sub(1).min(1024) as i32;
        let cap = self.max_delay.as_secs_f64();
        let raw = (self.base.as_secs_f64() * self.factor.powi(exp)).min(cap);
        let jittered = raw * (1.0 - self.jitter.clamp(0.0, 1.0) * u.clamp(0.0, 1.0));
        Duration::from_secs_f64(jittered.max(0.0))
    }

    /// The delay before the next attempt after attempt `failed` failed,
    /// with random jitter.
    pub fn delay(&self, failed: u32) -> Duration {
        self.delay_with(failed, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_geometrically_up_to_the_cap() {
        let p = RetryPolicy::default()
            .base(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .jitter(0.0);
        let ms: Vec<u128> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_only_shortens() {
        let p = RetryPolicy::default().jitter(0.5);
        assert_eq!(p.delay_with(3, 0.0), Duration::from_secs(8));
        assert_eq!(p.delay_with(3, 0.5), Duration::from_secs(6));
        for _ in 0..1000 {
            let d = p.delay(3);
            assert!(
                d > Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
    }

    #[test]
    fn huge_attempt_numbers_saturate_at_the_cap() {
        let p = RetryPolicy::default().jitter(0.0);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn validate_names_the_bad_value() {
        let e = RetryPolicy::exponential(0).validate().unwrap_err();
        assert_eq!(e.to_string(), "max_attempts (0) must be from 1 to 10000");
        let e = RetryPolicy::default().factor(0.5).validate().unwrap_err();
        assert!(e.to_string().contains("factor (0.5)"));
        let e = RetryPolicy::default().jitter(2.0).validate().unwrap_err();
        assert!(e.to_string().contains("jitter (2)"));
        assert!(RetryPolicy::default().validate().is_ok());
    }
}
