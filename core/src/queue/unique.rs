//! Enqueue with unique keys (`lua/unique.lua`): the check and the lock in
//! the same step as the XADD (or the delayed set), so concurrent producers
//! of one key make one job.

use redis::Value;
use redis::aio::ConnectionLike;

use super::{Queue, When, duration_ms, unix_ms};
use crate::envelope::Envelope;
use crate::error::QueueError;
use crate::job::JobId;
use crate::reply::protocol;
use crate::scripts;
use crate::unique::{EnqueueStatus, Enqueued, Unique};

/// One job for [`Queue::enqueue_unique`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Submit<'a> {
    /// The envelope; its `unique` field is written from `unique`.
    pub job: &'a Envelope,
    /// Its unique key, if any (checked by the caller with
    /// [`Unique::validate`]).
    pub unique: Option<&'a Unique>,
    /// When it becomes ready (`None`: now).
    pub when: Option<When>,
}

impl<'a> Submit<'a> {
    /// `job`, ready now, with no unique key.
    pub fn new(job: &'a Envelope) -> Self {
        Self {
            job,
            unique: None,
            when: None,
        }
    }

    /// With a unique key.
    pub fn unique(mut self, unique: Option<&'a Unique>) -> Self {
        self.unique = unique;
        self
    }

    /// Ready at `when` instead of now.
    pub fn when(mut self, when: Option<When>) -> Self {
        self.when = when;
        self
    }
}

impl Queue {
    /// Enqueues jobs, each checked against its unique key's lock and
    /// locking it, in one script (one round trip, atomic): a job whose key a
    /// live job holds is not enqueued ([`EnqueueStatus::Duplicate`], with
    /// that job's id); a debounce job whose key's job still waits takes
    /// its place ([`EnqueueStatus::Debounced`]). Jobs without a key are
    /// enqueued as by [`enqueue`](Self::enqueue) /
    /// [`schedule`](Self::schedule). A delayed job whose id is already
    /// waiting fails the call with [`QueueError::DuplicateId`] (the jobs
    /// before it in the call are written).
    pub async fn enqueue_unique<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        jobs: &[Submit<'_>],
    ) -> Result<Vec<Enqueued>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.note_lane(conn).await?;
        let mut inv = scripts::UNIQUE.prepare_invoke();
        inv.key(&self.keys.stream)
            .key(&self.keys.jobs)
            .key(&self.keys.delayed)
            .key(&self.keys.unique)
            .key(&self.keys.unique_ttl)
            .arg(jobs.len());
        for s in jobs {
            let (key, mode, ttl) = match s.unique {
                Some(u) => (u.key.as_str(), u.mode.code(), duration_ms(u.ttl).max(1)),
                None => ("", "", 1),
            };
            let (when, ms) = match s.when {
                None => ("now", 0),
                Some(When::In(d)) => ("in", duration_ms(d)),
                Some(When::At(t)) => ("at", unix_ms(t)),
            };
            let fields: Vec<(&str, String)> = self
                .in_lane(s.job)
                .fields()
                .into_iter()
                .filter(|(k, _)| *k != "unique")
                .collect();
            let n = 2 * (fields.len() + usize::from(s.unique.is_some()));
            inv.arg(key).arg(mode).arg(ttl).arg(when).arg(ms).arg(n);
            for (k, v) in fields {
                inv.arg(k).arg(v);
            }
            if s.unique.is_some() {
                inv.arg("unique").arg(key);
            }
        }
        let reply: Vec<Value> = inv
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("enqueue"))?;
        if reply.len() != 2 * jobs.len() {
            return Err(protocol("enqueue", "expected a code and an id per job"));
        }
        reply
            .chunks(2)
            .map(|pair| {
                let id: String = redis::from_redis_value_ref(&pair[1])
                    .map_err(|_| protocol("enqueue", "expected a job id"))?;
                let status = match &pair[0] {
                    Value::Int(0) => EnqueueStatus::New,
                    Value::Int(1) => EnqueueStatus::Duplicate,
                    Value::Int(2) => EnqueueStatus::Debounced,
                    Value::Int(-1) => {
                        return Err(QueueError::DuplicateId {
                            id,
                            queue: self.name().to_owned(),
                        });
                    }
                    _ => return Err(protocol("enqueue", "unknown code")),
                };
                Ok(Enqueued::new(JobId(id), status))
            })
            .collect()
    }
}
