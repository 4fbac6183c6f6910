//! The ceiling: what Redis alone does with stream entries of the shape
//! Millrace writes, in server-side Lua loops with no client in between.
//! XADD of N entries (the add rate), then XREADGROUP + XACK + XDEL of them
//! in batches (the consume rate). It is an upper bound: no network, no
//! parsing of client commands, no replies to write.

use std::time::Instant;

use redis::Script;

use crate::Bench;
use crate::stats::{Better, Figures};

/// Entries handled by one script call, so one call never holds the server
/// for long.
const CHUNK: u64 = 10_000;
/// Entries read (and acknowledged) per XREADGROUP in the consume loop,
/// like a worker with 128 free slots.
pub const READ_COUNT: u64 = 128;

/// XADD `ARGV[1]` entries with Millrace's fields: v, id, name, payload,
/// attempt, max_attempts, enqueued_at.
const ADD: &str = r#"
local n, payload, at, base = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
for i = 1, n do
  redis.call('XADD', KEYS[1], '*', 'v', '1',
    'id', string.format('01935f2e-7c1a-7000-8000-%012d', base + i),
    'name', 'noop', 'payload', payload, 'attempt', '1', 'max_attempts', '5',
    'enqueued_at', at)
end
return n
"#;

/// Read up to `ARGV[2]` entries for the group in batches of `ARGV[3]`,
/// acknowledging and deleting each batch; returns how many were consumed.
const CONSUME: &str = r#"
local group, limit, count = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local got = 0
while got < limit do
  local r = redis.call('XREADGROUP', 'GROUP', group, 'ceiling', 'COUNT', count,
    'STREAMS', KEYS[1], '>')
  if not r then break end
  local entries = r[1][2]
  if #entries == 0 then break end
  local ids = {}
  for i, e in ipairs(entries) do ids[i] = e[1] end
  redis.call('XACK', KEYS[1], group, unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
  got = got + #entries
end
return got
"#;

/// A ~100-byte JSON payload: `{"pad":"xxx…"}`, exactly what
/// `millrace_jobs::Noop { pad }` serializes to.
pub fn payload_pad() -> String {
    "x".repeat(91)
}

/// The payload JSON of [`payload_pad`].
pub fn payload_json() -> String {
    format!("{{\"pad\":\"{}\"}}", payload_pad())
}

/// Runs the ceiling `runs` times with `n` entries and records
/// `ceiling_add`, `ceiling_consume`, `ceiling_combined` (jobs/s) and their
/// Redis CPU per job.
pub async fn run(b: &Bench, figs: &mut Figures) -> anyhow::Result<()> {
    let n = b.sizes.ceiling;
    let add = Script::new(ADD);
    let consume = Script::new(CONSUME);
    let payload = payload_json();
    let mut conn = b.probe.conn();
    for run in 0..b.runs {
        let key = format!("{}:{{ceiling}}:stream", b.prefix);
        let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("g")
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await?;
        let at = millrace_core::queue::unix_ms(std::time::SystemTime::now());

        let cpu0 = b.probe.cpu_seconds().await?;
        let t0 = Instant::now();
        let mut done = 0;
        while done < n {
            let k = CHUNK.min(n - done);
            let _: u64 = add
                .key(&key)
                .arg(k)
                .arg(&payload)
                .arg(at)
                .arg(done)
                .invoke_async(&mut conn)
                .await?;
            done += k;
        }
        let t_add = t0.elapsed().as_secs_f64();
        let cpu1 = b.probe.cpu_seconds().await?;

        let t1 = Instant::now();
        let mut got = 0;
        loop {
            let k: u64 = consume
                .key(&key)
                .arg("g")
                .arg(CHUNK)
                .arg(READ_COUNT)
                .invoke_async(&mut conn)
                .await?;
            got += k;
            if k == 0 {
                break;
            }
        }
        let t_consume = t1.elapsed().as_secs_f64();
        let cpu2 = b.probe.cpu_seconds().await?;
        let len: u64 = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await?;
        let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
        anyhow::ensure!(
            got == n && len == 0,
            "ceiling consumed {got} of {n} entries, {len} left"
        );

        let nf = n as f64;
        figs.add("ceiling_add", "jobs/s", Better::Higher, None, nf / t_add);
        figs.add(
            "ceiling_consume",
            "jobs/s",
            Better::Higher,
            None,
            nf / t_consume,
        );
        figs.add(
            "ceiling_combined",
            "jobs/s",
            Better::Higher,
            None,
            nf / (t_add + t_consume),
        );
        figs.add(
            "ceiling_add_cpu",
            "us/job",
            Better::Lower,
            None,
            (cpu1 - cpu0) * 1e6 / nf,
        );
        figs.add(
            "ceiling_consume_cpu",
            "us/job",
            Better::Lower,
            None,
            (cpu2 - cpu1) * 1e6 / nf,
        );
        figs.add(
            "ceiling_combined_cpu",
            "us/job",
            Better::Lower,
            None,
            (cpu2 - cpu0) * 1e6 / nf,
        );
        b.progress(&format!(
            "ceiling run {}: add {:.0}/s, consume {:.0}/s",
            run + 1,
            nf / t_add,
            nf / t_consume
        ));
    }
    Ok(())
}
