//! The wire format: one stream entry per job attempt, as flat fields so that
//! `redis-cli XRANGE` is readable and any language can enqueue with XADD.
//!
//! | field | required | meaning |
//! | --- | --- | --- |
//! | `v` | no (1) | wire version; entries with a newer major version are dead-lettered, never mis-read |
//! | `id` | yes | job id (UUIDv7 from the producer), stable across attempts |
//! | `name` | yes | the job's stable name ([`crate::Job::NAME`]) |
//! | `payload` | yes | the job's arguments as JSON |
//! | `attempt` | no (1) | attempt number, from 1 |
//! | `max_attempts` | no (job's policy) | attempts allowed before dead-letter |
//! | `enqueued_at` | no | enqueue time, unix ms |
//! | `trace` | no | W3C `traceparent` of the producer |
//! | `unique` | no | idempotency key |
//! | `priority` | no (`default`) | the lane the job runs in: `high` or `low` (see `lane.rs`); an unknown value reads as `default` |
//! | `error` | no | last error, on retries and dead entries |
//!
//! Compatibility rule: readers ignore fields they do not know, and writers
//! only add optional fields within a version; a change that old readers
//! would mis-read bumps `v`.

use crate::error::DecodeError;
use crate::lane::Priority;

/// The wire version this build writes and the newest it reads.
pub const WIRE_VERSION: u32 = 1;
/// Highest attempt count accepted from the wire; larger values are absurd.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10_000;
/// Most fields (name/value pairs) an entry may have. An entry with more is
/// dead-lettered with the reason (keeping only the envelope's own fields):
/// the scripts copy entries with Lua's `unpack`, which fails past ~8,000
/// values. The same number is `MAX_FIELDS` (counted as values) in
/// `lua/prelude.lua`.
pub const MAX_FIELDS: usize = 64;
/// Largest entry (all names and values) a worker runs: 16 MiB. A larger
/// one is dead-lettered with the reason. The producer's own payload limit
/// ((`millrace::ClientBuilder::max_payload`), 1 MiB by default) is far
/// below it.
pub const MAX_ENTRY_BYTES: usize = 16 << 20;

/// A job as it travels through Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Envelope {
    /// Job id, stable across attempts.
    pub id: String,
    /// Job name, the key to its handler.
    pub name: String,
    /// JSON payload.
    pub payload: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Attempts allowed; `None` lets the worker use the job's policy.
    pub max_attempts: Option<u32>,
    /// Enqueue time in unix ms, when the producer gave one.
    pub enqueued_at: Option<u64>,
    /// W3C traceparent of the producer.
    pub trace: Option<String>,
    /// Idempotency key.
    pub unique: Option<String>,
    /// Last error, on retried attempts.
    pub error: Option<String>,
    /// The job's priority lane; `Default` is not written on the wire.
    pub priority: Priority,
}

impl Envelope {
    /// A first-attempt envelope for job `name` with `payload` (JSON).
    pub fn new(id: String, name: impl Into<String>, payload: String) -> Self {
        Self {
            id,
            name: name.into(),
            payload,
            attempt: 1,
            max_attempts: None,
            enqueued_at: None,
            trace: None,
            unique: None,
            error: None,
            priority: Priority::Default,
        }
    }

    /// The envelope as flat `field, value` arguments, in wire order.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = Vec::with_capacity(10);
        f.push(("v", WIRE_VERSION.to_string()));
        f.push(("id", self.id.clone()));
        f.push(("name", self.name.clone()));
        f.push(("payload", self.payload.clone()));
        f.push(("attempt", self.attempt.to_string()));
        if let Some(m) = self.max_attempts {
            f.push(("max_attempts", m.to_string()));
        }
        if let Some(t) = self.enqueued_at {
            f.push(("enqueued_at", t.to_string()));
        }
        for (k, v) in [
            ("trace", &self.trace),
            ("unique", &self.unique),
            ("error", &self.error),
        ] {
            if let Some(v) = v {
                f.push((k, v.clone()));
            }
        }
        if self.priority != Priority::Default {
            f.push(("priority", self.priority.as_str().to_owned()));
        }
        f
    }

    /// Appends the envelope's fields to a command (after `XADD key *`).
    pub fn write_args(&self, cmd: &mut redis::Cmd) {
        cmd.arg("v").arg(WIRE_VERSION);
        cmd.arg("id").arg(&self.id);
        cmd.arg("name").arg(&self.name);
        cmd.arg("payload").arg(&self.payload);
        cmd.arg("attempt").arg(self.attempt);
        if let Some(m) = self.max_attempts {
            cmd.arg("max_attempts").arg(m);
        }
        if let Some(t) = self.enqueued_at {
            cmd.arg("enqueued_at").arg(t);
        }
        for (k, v) in [
            ("trace", &self.trace),
            ("unique", &self.unique),
            ("error", &self.error),
        ] {
            if let Some(v) = v {
                cmd.arg(k).arg(v);
            }
        }
        if self.priority != Priority::Default {
            cmd.arg("priority").arg(self.priority.as_str());
        }
    }

    /// Decodes a stream entry's fields. Unknown fields are ignored; a later
    /// duplicate of a field wins.
    pub fn decode(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self, DecodeError> {
        if fields.len() > MAX_FIELDS {
            return Err(DecodeError::TooManyFields {
                found: fields.len(),
                limit: MAX_FIELDS,
            });
        }
        let size: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_ENTRY_BYTES {
            return Err(DecodeError::TooLarge {
                size,
                limit: MAX_ENTRY_BYTES,
            });
        }
        let mut id = None;
        let mut name = None;
        let mut payload = None;
        let mut attempt = None;
        let mut max_attempts = None;
        let mut enqueued_at = None;
        let mut trace = None;
        let mut unique = None;
        let mut error = None;
        let mut priority = None;
        let mut version = None;
        for (k, v) in fields {
            let slot = match k.as_slice() {
                b"v" => &mut version,
                b"id" => &mut id,
                b"name" => &mut name,
                b"payload" => &mut payload,
                b"attempt" => &mut attempt,
                b"max_attempts" => &mut max_attempts,
                b"enqueued_at" => &mut enqueued_at,
                b"trace" => &mut trace,
                b"unique" => &mut unique,
                b"error" => &mut error,
                b"priority" => &mut priority,
                _ => continue,
            };
            let text = String::from_utf8(v)
                .map_err(|_| DecodeError::NotUtf8(String::from_utf8_lossy(&k).into_owned()))?;
            *slot = Some(text);
        }
        if let Some(v) = version {
            let ok = v
                .parse::<u32>()
                .is_ok_and(|n| (1..=WIRE_VERSION).contains(&n));
            if !ok {
                return Err(DecodeError::Version {
                    found: v,
                    supported: WIRE_VERSION,
                });
            }
        }
        let id = non_empty(id, "id")?;
        let name = non_empty(name, "name")?;
        let payload = payload.ok_or(DecodeError::Missing("payload"))?;
        let attempt = match attempt {
            Some(a) => parse_count(&a, "attempt")?,
            None => 1,
        };
        let max_attempts = max_attempts
            .map(|m| parse_count(&m, "max_attempts"))
            .transpose()?;
        if let Some(m) = max_attempts.filter(|m| attempt > *m) {
            return Err(DecodeError::Invalid {
                field: "attempt",
                reason: format!("attempt {attempt} is past max_attempts {m}"),
            });
        }
        let enqueued_at = enqueued_at
            .map(|t| {
                t.parse::<u64>().map_err(|_| DecodeError::Invalid {
                    field: "enqueued_at",
                    reason: format!("{t:?} is not a unix time in ms"),
                })
            })
            .transpose()?;
        Ok(Self {
            id,
            name,
            payload,
            attempt,
            max_attempts,
            enqueued_at,
            trace,
            unique,
            error,
            priority: priority
                .as_deref()
                .and_then(Priority::from_wire)
                .unwrap_or_default(),
        })
    }
}

fn non_empty(v: Option<String>, field: &'static str) -> Result<String, DecodeError> {
    match v {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(DecodeError::Invalid {
            field,
            reason: "empty".into(),
        }),
        None => Err(DecodeError::Missing(field)),
    }
}

fn parse_count(s: &str, field: &'static str) -> Result<u32, DecodeError> {
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_ATTEMPTS_LIMIT).contains(&n) => Ok(n),
        _ => Err(DecodeError::Invalid {
            field,
            reason: format!("{s:?} is not a whole number from 1 to {MAX_ATTEMPTS_LIMIT}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn encoded(e: &Envelope) -> Vec<(Vec<u8>, Vec<u8>)> {
        e.fields()
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
            .collect()
    }

    #[test]
    fn round_trips_every_field() {
        let mut e = Envelope::new("j1".into(), "send", r#"{"a":1}"#.into());
        e.attempt = 3;
        e.max_attempts = Some(5);
        e.enqueued_at = Some(1_700_000_000_123);
        e.trace = Some("00-abc-def-01".into());
        e.unique = Some("u".into());
        e.error = Some("boom".into());
        assert_eq!(Envelope::decode(encoded(&e)).unwrap(), e);
    }

    #[test]
    fn minimal_foreign_entry_decodes_with_defaults() {
        let e = Envelope::decode(raw(&[("id", "x"), ("name", "n"), ("payload", "{}")])).unwrap();
        assert_eq!(e.attempt, 1);
        assert_eq!(e.max_attempts, None);
        assert_eq!(e.enqueued_at, None);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let e = Envelope::decode(raw(&[
            ("id", "x"),
            ("name", "n"),
            ("payload", "{}"),
            ("future_field", "?"),
        ]));
        assert!(e.is_ok());
    }

    #[test]
    fn missing_fields_are_named() {
        let err = Envelope::decode(raw(&[("id", "x"), ("payload", "{}")])).unwrap_err();
        assert_eq!(err.to_string(), "missing field `name`");
        let err = Envelope::decode(raw(&[("id", "x"), ("name", "n")])).unwrap_err();
        assert_eq!(err.to_string(), "missing field `payload`");
        let err = Envelope::decode(raw(&[("name", "n"), ("payload", "{}")])).unwrap_err();
        assert_eq!(err.to_string(), "missing field `id`");
        let err = Envelope::decode(raw(&[("id", ""), ("name", "n"), ("payload", "{}")]));
        assert!(err.unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn absurd_attempts_are_refused() {
        for (a, m) in [
            ("0", "5"),
            ("-1", "5"),
            ("abc", "5"),
            ("99999999999", "5"),
            ("6", "5"),
        ] {
            let err = Envelope::decode(raw(&[
                ("id", "x"),
                ("name", "n"),
                ("payload", "{}"),
                ("attempt", a),
                ("max_attempts", m),
            ]))
            .unwrap_err();
            assert!(matches!(err, DecodeError::Invalid { .. }), "{a}/{m}: {err}");
        }
        let err = Envelope::decode(raw(&[
            ("id", "x"),
            ("name", "n"),
            ("payload", "{}"),
            ("max_attempts", "0"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("max_attempts"));
    }

    #[test]
    fn bad_enqueue_time_and_utf8_are_refused() {
        let err = Envelope::decode(raw(&[
            ("id", "x"),
            ("name", "n"),
            ("payload", "{}"),
            ("enqueued_at", "yesterday"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("enqueued_at"));
        let mut f = raw(&[("id", "x"), ("name", "n")]);
        f.push((b"payload".to_vec(), vec![0xff, 0xfe]));
        let err = Envelope::decode(f).unwrap_err();
        assert_eq!(err.to_string(), "field `payload` is not valid UTF-8");
    }

    #[test]
    fn too_many_fields_and_too_large_entries_are_refused() {
        let mut f = raw(&[("id", "x"), ("name", "n"), ("payload", "{}")]);
        for i in 0..MAX_FIELDS {
            f.push((format!("extra{i}").into_bytes(), b"1".to_vec()));
        }
        let err = Envelope::decode(f).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "entry has {} fields (at most {MAX_FIELDS} allowed)",
                MAX_FIELDS + 3
            )
        );
        let mut f = raw(&[("id", "x"), ("name", "n")]);
        f.push((b"payload".to_vec(), vec![b'a'; MAX_ENTRY_BYTES]));
        let err = Envelope::decode(f).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn newer_wire_versions_are_refused_not_misread() {
        let err = Envelope::decode(raw(&[
            ("v", "2"),
            ("id", "x"),
            ("name", "n"),
            ("payload", "{}"),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported wire version 2 (this build reads up to 1)"
        );
    }
}
