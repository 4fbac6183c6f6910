//! The job contract: a serde type with a stable name, what a handler gets
//! (a [`JobContext`]) and what it returns (a [`JobError`] on failure).

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::retry::RetryPolicy;
use crate::unique::Unique;

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

    /// This job's unique key, e.g. from its fields (`invoice:{id}`): while
    /// a job holds it, enqueueing another with the same key is a duplicate
    /// (see [`Unique`]). An `EnqueueOptions::unique` wins. Defaults to
    /// none.
    fn unique(&self) -> Option<Unique> {
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
    /// The worker's shared state (`WorkerBuilder::state`), read with
    /// [`JobContext::state`].
    state: SharedState,
}

/// The worker's state as handlers see it: shared, of any type.
#[derive(Clone, Default)]
struct SharedState(Option<Arc<dyn Any + Send + Sync>>);

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
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
            state: SharedState::default(),
        }
    }

    /// This context with the worker's shared state (the worker runtime
    /// sets it from `WorkerBuilder::state`; tests of handlers set it here).
    #[must_use]
    pub fn with_state(mut self, state: Arc<dyn Any + Send + Sync>) -> Self {
        self.state = SharedState(Some(state));
        self
    }

    /// The worker's shared state of type `T` (an app's pools, clients and
    /// settings, given once to `Worker::builder(config).state(app)`),
    /// like axum's `State<T>`:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use millrace_core::{JobContext, JobError};
    /// struct App { greeting: String }
    /// async fn handler(ctx: JobContext) -> Result<(), JobError> {
    ///     let app = ctx.state::<App>()?;
    ///     assert_eq!(app.greeting, "hi");
    ///     Ok(())
    /// }
    /// let ctx = JobContext::new("id".into(), "1-0".into(), "default".into(), 1)
    ///     .with_state(Arc::new(App { greeting: "hi".into() }));
    /// assert!(ctx.state::<App>().is_ok());
    /// assert!(ctx.state::<String>().is_err());
    /// ```
    ///
    /// Fails, with a retryable [`JobError`] naming the type, when the
    /// worker was given no state or state of another type: a deployment
    /// mistake that a corrected worker can retry.
    pub fn state<T: Any + Send + Sync>(&self) -> Result<&T, JobError> {
        self.state
            .0
            .as_deref()
            .and_then(|s| s.downcast_ref::<T>())
            .ok_or_else(|| {
                JobError::retry(format!(
                    "this worker has no state of type `{}`: give it with Worker::builder(config).state(..)",
                    std::any::type_name::<T>()
                ))
            })
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

/// Any error converts to a retryable failure, so a handler can use `?` on
/// it: every `std::error::Error + Send + Sync + 'static` (`std::io::Error`,
/// `serde_json::Error`, `ParseIntError`, your own `thiserror` enums),
/// `anyhow::Error`, `Box<dyn Error + Send + Sync>`, and plain `String` /
/// `&str` messages.
///
/// The design: one blanket impl over `Into<Box<dyn Error + Send + Sync>>`,
/// the bound std's own `?` uses for boxed errors. A blanket over
/// `E: std::error::Error` cannot also cover `anyhow::Error` or a boxed
/// error (neither implements `Error`, and coherence forbids adding impls
/// for them beside that blanket); `anyhow` converts itself into the box,
/// so this needs no dependency on `anyhow`. For the same reason `JobError`
/// itself does not implement `std::error::Error`.
///
/// The message is the error's text followed by its `source()` chain
/// (`"loading invoice 42: connection refused"`, like `anyhow`'s `{:#}`); a
/// source whose text the message already holds is not repeated. Errors
/// that are not `Send + Sync + 'static` (e.g. a `PoisonError` holding a
/// guard) need `JobError::retry(e)`.
///
/// ```
/// use millrace_core::JobError;
/// fn parse(s: &str) -> Result<u64, JobError> {
///     let n: u64 = s.parse()?; // ParseIntError
///     let _ = std::fs::metadata("/")?; // std::io::Error
///     let boxed: Box<dyn std::error::Error + Send + Sync> = "boxed".into();
///     if n == 0 { Err(boxed)? } // Box<dyn Error + Send + Sync>
///     if n == 1 { Err("a plain message")? }
///     Ok(n)
/// }
/// assert!(matches!(parse("x"), Err(JobError::Retry { .. })));
/// assert_eq!(parse("0").unwrap_err().message(), "boxed");
/// assert_eq!(parse("7").ok(), Some(7));
/// ```
impl<E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>> From<E> for JobError {
    fn from(err: E) -> Self {
        Self::Retry {
            message: chain(err.into().as_ref()),
        }
    }
}

/// `err`'s text, then each source's text not already in it, `: `-joined.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("loading invoice 42")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("loading invoice 42: {0}")]
    struct Repeats(#[source] std::io::Error);

    fn refused() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused")
    }

    #[test]
    fn the_message_carries_the_source_chain_once() {
        assert_eq!(
            JobError::from(Outer(refused())).message(),
            "loading invoice 42: connection refused"
        );
        assert_eq!(
            JobError::from(Repeats(refused())).message(),
            "loading invoice 42: connection refused"
        );
    }

    #[test]
    fn common_errors_convert_to_retry() {
        let json = serde_json::from_str::<u32>("x").map_err(JobError::from);
        assert!(matches!(json, Err(JobError::Retry { .. })));
        let int = "x".parse::<u32>().map_err(JobError::from);
        assert!(matches!(int, Err(JobError::Retry { .. })));
        assert_eq!(JobError::from(String::from("nope")).message(), "nope");
    }
}
