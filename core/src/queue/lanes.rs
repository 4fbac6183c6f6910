//! The lanes of one queue (see `lane.rs`): lane views of a [`Queue`], the
//! lanes a queue uses, and the two halves of a read across lanes
//! (`lua/take.lua`, then a blocking XREAD that claims nothing).

use std::borrow::Cow;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use super::{Delivery, Queue, duration_ms};
use crate::envelope::Envelope;
use crate::error::QueueError;
use crate::lane::{Priority, lanes_from_names};
use crate::reply::{parse_entries, protocol};
use crate::scripts;

/// What one [`Queue::take`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Taken {
    /// Entries now delivered to the consumer, each with its lane, highest
    /// lane first.
    pub entries: Vec<(Priority, Delivery)>,
    /// When nothing was found: each lane's group position (last-delivered
    /// id), in the order of the lanes asked, for [`Queue::wait_lanes`].
    pub positions: Vec<String>,
}

impl Queue {
    /// The same queue seen through lane `lane`: its operations use that
    /// lane's ready stream, delayed set and retry counts (see
    /// [`Keys::for_lane`](crate::Keys::for_lane)).
    #[must_use]
    pub fn lane(&self, lane: Priority) -> Queue {
        if lane == self.keys.lane {
            return self.clone();
        }
        Queue {
            keys: self.keys.for_lane(lane),
            group: self.group.clone(),
            history: self.history,
        }
    }

    /// The lane this view is of ([`Priority::Default`] for a plain queue).
    pub fn priority(&self) -> Priority {
        self.keys.lane
    }

    /// Records this view's lane in the queue's lanes (nothing for the
    /// default lane), before a script writes to the lane's keys.
    pub(crate) async fn note_lane<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<(), QueueError> {
        let Some(lane) = self.keys.lane.segment() else {
            return Ok(());
        };
        redis::cmd("SADD")
            .arg(&self.keys.lanes)
            .arg(lane)
            .query_async::<()>(conn)
            .await
            .map_err(QueueError::redis("register"))
    }

    /// `job` as written to this view's lane: its `priority` field names the
    /// lane it is written to (so a dead-letter replay finds the lane again),
    /// whatever the caller set.
    pub(crate) fn in_lane<'a>(&self, job: &'a Envelope) -> Cow<'a, Envelope> {
        if job.priority == self.keys.lane {
            Cow::Borrowed(job)
        } else {
            let mut fixed = job.clone();
            fixed.priority = self.keys.lane;
            Cow::Owned(fixed)
        }
    }

    /// The lanes the queue uses: `default` and every lane a producer has
    /// written to, in serving order.
    pub async fn lanes<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<Vec<Priority>, QueueError> {
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&self.keys.lanes)
            .query_async(conn)
            .await
            .map_err(QueueError::redis("lanes"))?;
        Ok(lanes_from_names(&names))
    }

    /// Reads up to `count` new entries for `consumer` across `lanes`, in
    /// the order given (each lane only for what the ones before it left),
    /// without blocking. Fails with a missing group only when nothing was
    /// delivered.
    pub async fn take<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        lanes: &[Priority],
        count: usize,
    ) -> Result<Taken, QueueError> {
        let mut inv = scripts::TAKE.prepare_invoke();
        for lane in lanes {
            inv.key(self.keys.for_lane(*lane).stream);
        }
        inv.arg(&self.group).arg(consumer).arg(count.max(1));
        let reply: Value = inv
            .invoke_async(conn)
            .await
            .map_err(QueueError::redis("read"))?;
        parse_taken(reply, lanes)
    }

    /// Blocks up to `block` until a lane has an entry past its position
    /// (from [`take`](Self::take)); claims nothing, so a read cut short
    /// loses nothing. Returns whether something arrived.
    pub async fn wait_lanes<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        lanes: &[Priority],
        positions: &[String],
        block: Duration,
    ) -> Result<bool, QueueError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(duration_ms(block).max(1))
            .arg("STREAMS");
        for lane in lanes {
            cmd.arg(self.keys.for_lane(*lane).stream);
        }
        for (i, _) in lanes.iter().enumerate() {
            cmd.arg(positions.get(i).map_or("$", String::as_str));
        }
        let reply: Value = cmd
            .query_async(conn)
            .await
            .map_err(QueueError::redis("read"))?;
        Ok(!matches!(reply, Value::Nil))
    }
}

fn parse_taken(reply: Value, lanes: &[Priority]) -> Result<Taken, QueueError> {
    let Value::Array(mut parts) = reply else {
        return Err(protocol("take", "expected an array"));
    };
    if parts.len() != 2 {
        return Err(protocol("take", "expected two elements"));
    }
    let positions = match parts.pop() {
        Some(Value::Array(ids)) => ids
            .into_iter()
            .map(|v| match v {
                Value::BulkString(b) => String::from_utf8(b).ok(),
                Value::SimpleString(s) => Some(s),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| protocol("take", "expected entry ids"))?,
        _ => return Err(protocol("take", "expected an array of ids")),
    };
    let Some(Value::Array(found)) = parts.pop() else {
        return Err(protocol("take", "expected an array of lanes"));
    };
    let mut entries = Vec::new();
    for lane in found {
        let Value::Array(mut pair) = lane else {
            return Err(protocol("take", "expected [lane, entries]"));
        };
        let list = pair.pop();
        let lane = match pair.pop() {
            Some(Value::Int(i)) => usize::try_from(i - 1)
                .ok()
                .and_then(|i| lanes.get(i).copied())
                .ok_or_else(|| protocol("take", "lane index out of range"))?,
            _ => return Err(protocol("take", "expected a lane index")),
        };
        let list = list.ok_or_else(|| protocol("take", "expected entries"))?;
        entries.extend(parse_entries(list, "take")?.into_iter().map(|d| (lane, d)));
    }
    Ok(Taken { entries, positions })
}
