//! What both enqueue paths (the Redis [`Client`](crate::Client) and the
//! Postgres [`outbox`](crate::outbox)) check and build before writing a job:
//! its JSON payload within the size limit, its attempts within range, a
//! non-empty id and the traceparent. One place, so the two refuse the same
//! bad input with the same words.

use millrace_core::envelope::MAX_ATTEMPTS_LIMIT;
use millrace_core::{ConfigError, Job, JobId};

use crate::options::EnqueueOptions;

/// A job ready to be written.
pub(crate) struct Prepared {
    pub id: JobId,
    pub payload: String,
    pub max_attempts: u32,
    pub trace: Option<String>,
}

/// Why a job was refused before anything was written; each enqueue path
/// turns it into its own error type.
pub(crate) enum Invalid {
    Serialize {
        job: &'static str,
        source: serde_json::Error,
    },
    TooLarge {
        job: &'static str,
        size: usize,
        limit: usize,
    },
    Config(ConfigError),
}

/// Serializes and checks `job` with `options`, against `max_payload`.
pub(crate) fn prepare<J: Job>(
    job: &J,
    options: &EnqueueOptions,
    max_payload: usize,
) -> Result<Prepared, Invalid> {
    let payload = serde_json::to_string(job).map_err(|source| Invalid::Serialize {
        job: J::NAME,
        source,
    })?;
    if payload.len() > max_payload {
        return Err(Invalid::TooLarge {
            job: J::NAME,
            size: payload.len(),
            limit: max_payload,
        });
    }
    let max_attempts = options.max_attempts.unwrap_or(J::retry().max_attempts);
    if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
        return Err(Invalid::Config(ConfigError::Invalid(format!(
            "max_attempts ({max_attempts}) must be from 1 to {MAX_ATTEMPTS_LIMIT}"
        ))));
    }
    let id = options.job_id.clone().unwrap_or_default();
    if id.0.is_empty() {
        return Err(Invalid::Config(ConfigError::Invalid(
            "job id must not be empty".into(),
        )));
    }
    Ok(Prepared {
        id,
        payload,
        max_attempts,
        trace: options.traceparent(),
    })
}
