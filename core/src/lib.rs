//! # millrace-core
//!
//! The protocol under Millrace, a background-job platform on Redis Streams:
//! the keyspace ([`Keys`]), the wire format ([`Envelope`]), the Lua scripts
//! and the atomic queue operations ([`Queue`]), the retry policy
//! ([`RetryPolicy`]), the job contract ([`Job`], [`JobContext`],
//! [`JobError`]) and connection setup ([`connect`]). It runs no tasks of its
//! own and knows nothing of HTTP or command lines.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use millrace_core::{Envelope, JobId, Queue, connect};
//! let mut conn = connect::command_connection("redis://127.0.0.1:6379").await?;
//! let queue = Queue::new("default")?;
//! queue.declare(&mut conn).await?;
//! let job = Envelope::new(JobId::new().0, "noop", "{}".into());
//! queue.enqueue(&mut conn, &[job]).await?;
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `schedule` | no | the `schedule` module: periodic jobs (cron expressions with croner, IANA time zones with jiff and its bundled tz database) and their claim script; the worker and the CLI turn it on |

pub mod admin;
pub mod connect;
pub mod consumer;
pub mod envelope;
pub mod error;
pub mod history;
pub mod inspect;
pub mod job;
pub mod keys;
pub mod lane;
pub mod outbox;
pub mod partition;
pub mod queue;
mod reply;
pub mod retry;
#[cfg(feature = "schedule")]
pub mod schedule;
pub mod scripts;
pub mod slot;
pub mod status;
pub mod trace;
pub mod unique;

pub use connect::Conn;
pub use consumer::{Leave, PruneRule};
pub use envelope::Envelope;
pub use error::{ConfigError, ConnectError, DecodeError, QueueError, Redacted};
pub use history::HistoryRetention;
pub use job::{Job, JobContext, JobError, JobId};
pub use keys::Keys;
pub use lane::Priority;
pub use queue::{
    Acked, Cancel, DeadRetention, Delivery, FailOutcome, Failure, PauseInfo, Promoted, Queue,
    ReadFrom, Reclaimed, Renewal, Submit, When,
};
pub use retry::RetryPolicy;
pub use status::JobStatus;
pub use unique::{EnqueueStatus, Enqueued, Unique, UniqueLock, UniqueMode};

/// Re-exported so users name one version of these crates.
pub use redis;
pub use tokio_util::sync::CancellationToken;
