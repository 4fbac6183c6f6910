//! Error types of the protocol layer.

use std::fmt;

/// A configuration value was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The value is invalid; the message says which and why.
    #[error("{0}")]
    Invalid(String),
}

/// Connecting to Redis failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to Redis at {url}: {reason}")]
pub struct ConnectError {
    /// The URL tried, with any password hidden.
    pub url: String,
    /// Why it failed, in a few words.
    pub reason: String,
}

/// A Redis operation on a queue failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis answered with an error or the connection failed.
    #[error("redis {op} failed: {error}")]
    Redis {
        /// The operation that failed (e.g. "enqueue", "ack").
        op: &'static str,
        /// The redis-rs error; its text is part of this error's message, so
        /// it is not also given as `source()` (a report would say it twice).
        error: redis::RedisError,
    },
    /// Another job with this id is already waiting in the delayed set: a
    /// live job is never overwritten (ids are the caller's to choose).
    #[error(
        "job id {id:?} is already scheduled or retrying in queue {queue:?}: a live job is never overwritten; choose another id"
    )]
    DuplicateId {
        /// The job id.
        id: String,
        /// The queue.
        queue: String,
    },
    /// An argument was rejected before anything was sent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis answered with something the protocol does not expect.
    #[error("unexpected reply to {op}: {detail}")]
    Protocol {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl QueueError {
    /// Wraps a redis error with the operation that hit it.
    pub fn redis(op: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |error| Self::Redis { op, error }
    }

    /// The underlying redis error, when there is one.
    pub fn redis_error(&self) -> Option<&redis::RedisError> {
        match self {
            Self::Redis { error, .. } => Some(error),
            Self::Protocol { .. } | Self::DuplicateId { .. } | Self::Config(_) => None,
        }
    }

    /// True when the consumer group (or its stream) is missing, as after a
    /// Redis restart without persistence: recreate it and go on.
    pub fn is_no_group(&self) -> bool {
        self.redis_error().and_then(|e| e.code()) == Some("NOGROUP")
    }

    /// True when the failure is the connection's (refused, dropped, timed
    /// out), or a Redis Cluster's passing state (a failover under way:
    /// `CLUSTERDOWN`, `TRYAGAIN`, a redirect the client gave up on),
    /// rather than a command's: retry after a pause.
    pub fn is_connection(&self) -> bool {
        self.redis_error().is_some_and(|e| {
            e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_io_error()
                || e.is_cluster_error()
        })
    }
}

/// A stream entry that is not a valid Millrace envelope.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field is not valid UTF-8.
    #[error("field `{0}` is not valid UTF-8")]
    NotUtf8(String),
    /// A field holds a value out of range or of the wrong kind.
    #[error("field `{field}` is invalid: {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The entry has more fields than [`crate::envelope::MAX_FIELDS`].
    #[error("entry has {found} fields (at most {limit} allowed)")]
    TooManyFields {
        /// Fields found.
        found: usize,
        /// The limit ([`crate::envelope::MAX_FIELDS`]).
        limit: usize,
    },
    /// The entry is larger than [`crate::envelope::MAX_ENTRY_BYTES`].
    #[error("entry is {size} bytes (at most {limit} allowed)")]
    TooLarge {
        /// Its size, names and values.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The entry was written by a newer version of the wire format.
    #[error("unsupported wire version {found} (this build reads up to {supported})")]
    Version {
        /// The version in the entry.
        found: String,
        /// The newest version this build reads.
        supported: u32,
    },
}

/// Hides the password of a Redis URL for messages and logs.
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        let Some(scheme_end) = url.find("://") else {
            return f.write_str(url);
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                let user = userinfo.split(':').next().unwrap_or("");
                let shown = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    "***".to_owned()
                };
                write!(f, "{}{shown}{}", &url[..scheme_end + 3], &rest[at..])
            }
            None => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        let r = |u: &str| Redacted(u).to_string();
        assert_eq!(r("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(r("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(r("rediss://bob:secret@h:1/2"), "rediss://bob:***@h:1/2");
        assert_eq!(r("redis://token@h"), "redis://***@h");
        assert_eq!(r("not a url"), "not a url");
    }
}
