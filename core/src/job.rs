//! The job contract: a serde type with a stable name, what a handler gets
//! (a [`JobContext`]) and what it returns (a [`JobError`] on failure).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::retry::RetryPolicy;

/// A typed job. Its `NAME` is written on the wire and must stay stable.
///
/// ```
/// use millrace_core::{Job, RetryPolicy};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct SendInvoice { invoice_id: u64 }
/// impl Job for SendInvoice {
///     const NAME: &'static str = "send_invoice";
///     const QUEUE: &'static str = "billing";
///     fn retry() -> RetryPolicy { RetryPolicy::exponential(10) }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// Stable wire name, the key to the job's handler.
    const NAME: &'static str;
    /// Queue the job goes to unless the producer says otherwise.
    const QUEUE: &'static str = "default";

    /// Retry policy. Defaults to [`RetryPolicy::default`].
    fn retry() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Longest an attempt may run before its token is cancelled and the
    /// attempt fails. Defaults to none (the worker's `job_timeout` applies).
    fn timeout() -> Option<Duration> {
        None
    }
}

/// A job id: a UUIDv7 string chosen by the producer, stable across attempts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub String);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a handler knows about the attempt it runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobContext {
    /// Job id, stable across attempts.
    pub job_id: String,
    /// Stream entry id of this attempt.
    pub entry_id: String,
    /// Queue the job came from.
    pub queue: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// Enqueue time in unix ms, when known.
    pub enqueued_at: Option<u64>,
    /// The producer's W3C traceparent, when given.
    pub trace: Option<String>,
    /// Cancelled when the worker shuts down, the attempt times out or its
    /// lease is lost: a long handler should watch it and stop.
    pub cancel: CancellationToken,
}

impl JobContext {
    /// A context, for the worker runtime and for tests of handlers.
    pub fn new(job_id: String, entry_id: String, queue: String, attempt: u32) -> Self {
        Self {
            job_id,
            entry_id,
            queue,
            attempt,
            max_attempts: attempt,
            enqueued_at: None,
            trace: None,
            cancel: CancellationToken::new(),
        }
    }
}

/// Why an attempt failed, and what to do next.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JobError {
    /// Retry per the job's policy (the default for any error).
    Retry {
        /// The error, as text.
        message: String,
    },
    /// Retry after exactly this delay (e.g. an HTTP 429 Retry-After).
    RetryAfter {
        /// Delay before the next attempt.
        delay: Duration,
        /// The error, as text.
        message: String,
    },
    /// Do not retry: dead-letter the job now.
    Permanent {
        /// The error, as text.
        message: String,
    },
}

impl JobError {
    /// A failure to retry per the policy.
    pub fn retry(err: impl fmt::Display) -> Self {
        Self::Retry {
            message: err.to_string(),
        }
    }

    /// A failure to retry after `delay`.
    pub fn retry_after(delay: Duration, err: impl fmt::Display) -> Self {
        Self::RetryAfter {
            delay,
            message: err.to_string(),
        }
    }

    /// A failure that no retry can fix.
    pub fn permanent(err: impl fmt::Display) -> Self {
        Self::Permanent {
            message: err.to_string(),
        }
    }

    /// The error text.
    pub fn message(&self) -> &str {
        match self {
            Self::Retry { message }
            | Self::RetryAfter { message, .. }
            | Self::Permanent { message } => message,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Any error converts to a retryable failure, so handlers can use `?`.
impl<E: std::error::Error> From<E> for JobError {
    fn from(err: E) -> Self {
        Self::retry(err)
    }
}
