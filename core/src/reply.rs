//! Parsing Redis replies of stream reads and claims into [`Delivery`]s.

use redis::Value;

use crate::error::QueueError;
use crate::queue::Delivery;

/// A reply that does not have the shape the protocol expects.
pub(crate) fn protocol(op: &'static str, detail: &str) -> QueueError {
    QueueError::Protocol {
        op,
        detail: detail.to_owned(),
    }
}

pub(crate) fn parse_read_reply(reply: Value) -> Result<Vec<Delivery>, QueueError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .collect::<Vec<_>>(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        _ => return Err(protocol("read", "expected an array of streams")),
    };
    let mut out = Vec::new();
    for entries in streams {
        out.extend(parse_entries(entries, "read")?);
    }
    Ok(out)
}

/// Parses `[[id, [f, v, ...] | nil], ...]` as XREADGROUP and XCLAIM return.
pub(crate) fn parse_entries(v: Value, op: &'static str) -> Result<Vec<Delivery>, QueueError> {
    let Value::Array(entries) = v else {
        return Err(protocol(op, "expected an array of entries"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            continue; // XCLAIM may return nil for an entry deleted meanwhile
        };
        if parts.len() != 2 {
            return Err(protocol(op, "expected [id, fields]"));
        }
        let fields = parts.pop();
        let entry_id = match parts.pop() {
            Some(Value::BulkString(b)) => {
                String::from_utf8(b).map_err(|_| protocol(op, "entry id is not UTF-8"))?
            }
            Some(Value::SimpleString(s)) => s,
            _ => return Err(protocol(op, "expected an entry id")),
        };
        let fields = match fields {
            Some(Value::Array(flat)) => Some(pairs(flat)),
            Some(Value::Map(map)) => Some(
                map.into_iter()
                    .filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
                    .collect(),
            ),
            _ => None,
        };
        out.push(Delivery { entry_id, fields });
    }
    Ok(out)
}

fn pairs(flat: Vec<Value>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Some(k), Some(v)) = (bytes(k), bytes(v)) {
            out.push((k, v));
        }
    }
    out
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}
