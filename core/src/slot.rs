//! Redis Cluster hash slots: which slot a key hashes to (CRC16-XMODEM of
//! its hash tag, as Redis and redis-rs compute it) and which master serves
//! a slot (`CLUSTER SLOTS`, with the endpoint each master announces).

use redis::aio::ConnectionLike;

use crate::error::QueueError;

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The hash slot of `key`: of its hash tag (the text between the first `{`
/// and the next `}`, when not empty), else of the whole key.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(bytes);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// A master of a cluster: its node id and the endpoint it announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Its node id (or its endpoint when the reply names none).
    pub id: String,
    /// Its announced host (an IP, or a hostname when the cluster announces
    /// hostnames); empty when the node answering should be used, `?` when
    /// unknown.
    pub host: String,
    /// Its port (the TLS port on a TLS cluster).
    pub port: u16,
}

/// The master serving each slot: ranges of slots and the master (an index
/// into [`masters`](Self::masters)) of each.
#[derive(Debug, Clone, Default)]
pub struct SlotMap {
    ranges: Vec<(u16, u16, usize)>,
    masters: Vec<Master>,
}

impl SlotMap {
    /// A map from `(first slot, last slot, master)` ranges; masters are
    /// numbered in the order of their first range, one per id.
    pub fn new(ranges: impl IntoIterator<Item = (u16, u16, Master)>) -> Self {
        let mut map = Self::default();
        for (first, last, master) in ranges {
            let m = match map.masters.iter().position(|x| x.id == master.id) {
                Some(m) => m,
                None => {
                    map.masters.push(master);
                    map.masters.len() - 1
                }
            };
            map.ranges.push((first, last, m));
        }
        map
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[first, last, [host, port, id,
    /// ...], replicas...], ...]`. `None` for a reply of another shape.
    pub fn parse(reply: &redis::Value) -> Option<Self> {
        use redis::Value;
        let text = |v: &Value| match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            Value::Nil => Some(String::new()),
            _ => None,
        };
        let int = |v: &Value| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        };
        let Value::Array(items) = reply else {
            return None;
        };
        let mut ranges = Vec::with_capacity(items.len());
        for item in items {
            let Value::Array(item) = item else {
                return None;
            };
            let first = u16::try_from(int(item.first()?)?).ok()?;
            let last = u16::try_from(int(item.get(1)?)?).ok()?;
            let Value::Array(node) = item.get(2)? else {
                return None;
            };
            let host = text(node.first()?)?;
            let port = u16::try_from(int(node.get(1)?)?).ok()?;
            let id = match node.get(2) {
                Some(v) => text(v)?,
                None => format!("{host}:{port}"),
            };
            ranges.push((first, last, Master { id, host, port }));
        }
        Some(Self::new(ranges))
    }

    /// How many masters serve slots.
    pub fn masters(&self) -> usize {
        self.masters.len()
    }

    /// The master (index) serving `slot`, if any does.
    pub fn master_of(&self, slot: u16) -> Option<usize> {
        self.ranges
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, m)| *m)
    }

    /// The master numbered `m` (see [`master_of`](Self::master_of)).
    pub fn master(&self, m: usize) -> Option<&Master> {
        self.masters.get(m)
    }

    /// The master serving `key`'s slot.
    pub fn master_for_key(&self, key: &str) -> Option<&Master> {
        self.masters.get(self.master_of(key_slot(key))?)
    }
}

/// The cluster's slot map (`CLUSTER SLOTS` on `conn`), or `None` on a
/// server that is not a cluster (or for a user who may not ask, which a
/// cluster client could not be).
pub async fn read_slot_map<C: ConnectionLike + Send>(
    conn: &mut C,
) -> Result<Option<SlotMap>, QueueError> {
    let reply: redis::Value = match redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await {
        Ok(v) => v,
        // Not a cluster; or a user without `+cluster|slots`, which a
        // cluster client could not have connected as: one server.
        Err(e)
            if e.to_string().contains("cluster support disabled") || e.code() == Some("NOPERM") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(QueueError::redis("cluster slots")(e)),
    };
    SlotMap::parse(&reply)
        .map(Some)
        .ok_or_else(|| crate::reply::protocol("CLUSTER SLOTS", &format!("{reply:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    #[test]
    fn slots_are_redis_cluster_slots() {
        // `CLUSTER KEYSLOT` of these on Redis 7.0.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("somekey"), 11058);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot("millrace:{orders#3}:stream"), key_slot("orders#3"));
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_cluster_slots_reply_gives_each_slots_master_and_endpoint() {
        let node = |host: &str, port: i64, id: &str| {
            Value::Array(vec![
                bulk(host),
                Value::Int(port),
                bulk(id),
                Value::Array(vec![]),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("redis-0.example", 6380, "a"),
                node("redis-3.example", 6380, "d"),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("", 7000, "b"),
            ]),
            Value::Array(vec![
                Value::Int(100),
                Value::Int(99),
                node("redis-0.example", 6380, "a"),
            ]),
        ]);
        let map = SlotMap::parse(&reply).unwrap_or_default();
        assert_eq!(map.masters(), 2);
        assert_eq!(map.master_of(0), Some(0));
        assert_eq!(map.master_of(16383), Some(1));
        let m = map.master_for_key("foo").cloned();
        assert_eq!(
            m,
            Some(Master {
                id: "b".into(),
                host: String::new(),
                port: 7000
            })
        );
        assert_eq!(
            map.master_for_key("{a}").map(|m| m.host.as_str()),
            Some(if key_slot("a") <= 5460 {
                "redis-0.example"
            } else {
                ""
            })
        );
        for bad in [
            Value::Int(1),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(1)])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(70000),
                node("h", 1, "x"),
            ])]),
        ] {
            assert!(SlotMap::parse(&bad).is_none(), "{bad:?}");
        }
    }
}
