-- Acknowledge finished entries and delete them, so the stream holds only
-- unfinished work; a retried entry's attempt record goes with it, and the
-- unique locks of the jobs that succeeded are released (a throttle lock
-- stays for its TTL; a lock a later job holds now is left alone).
-- KEYS[1] stream, KEYS[2] stats hash, KEYS[3] tries hash, KEYS[4] unique
-- hash, KEYS[5] unique ttl zset, KEYS[6] history stream, KEYS[7..] result
-- keys, one per record that carries a result, in record order.
-- ARGV[1] group, ARGV[2] mode:
--   'ids': ARGV[3] n, the number of entry ids, ARGV[4 .. 3+n] entry ids
--     (no history, no results: one XACK for all), then (unique key, job id)
--     pairs of the locks to release;
--   'full': ARGV[3] consumer, ARGV[4] history cap (entries; 0 = no
--     history), ARGV[5] history max age ms (0 = none), ARGV[6] result TTL
--     ms, then one record of 7 per entry: entry id, job id, job name,
--     attempts, run time ms, result ('' = none, else JSON stored in the
--     next result key with the TTL), unique key ('' = none). Only an entry
--     this call acknowledged (still pending: not acked meanwhile by a
--     worker that took it over) gets its history entry and its result, so
--     a job run twice is recorded once. A record with an empty job id (an
--     entry deleted while pending) only acknowledges.
-- Returns how many entries were pending.
local stream, group = KEYS[1], ARGV[1]
local n, ids = 0, nil
if ARGV[2] == 'ids' then
  local count = tonumber(ARGV[3])
  if not count or count < 1 or 3 + count > #ARGV or (#ARGV - 3 - count) % 2 ~= 0 then
    return redis.error_reply('ERR ack: bad argument layout')
  end
  ids = { unpack(ARGV, 4, 3 + count) }
  n = redis.call('XACK', stream, group, unpack(ids))
  for i = 4 + count, #ARGV, 2 do release_unique(KEYS[4], KEYS[5], ARGV[i], ARGV[i + 1]) end
elseif ARGV[2] == 'full' then
  local consumer, cap, ttl = ARGV[3], tonumber(ARGV[4]) or 0, ARGV[6]
  if #ARGV < 13 or (#ARGV - 6) % 7 ~= 0 then return redis.error_reply('ERR ack: bad record list') end
  ids = {}
  for i = 7, #ARGV, 7 do ids[#ids + 1] = ARGV[i] end
  -- One XACK for the batch. When it acknowledged fewer entries than given
  -- (rare: a worker that took an entry over finished it first), the ones
  -- this call acknowledged are those still in the stream: every script
  -- that acknowledges an entry deletes it in the same call.
  n = redis.call('XACK', stream, group, unpack(ids))
  local mine = nil
  if n < #ids then
    mine = {}
    for _, id in ipairs(ids) do
      if #redis.call('XRANGE', stream, id, id) == 1 then mine[id] = true end
    end
  end
  local k = 6
  for i = 7, #ARGV, 7 do
    local job, result = ARGV[i + 1], ARGV[i + 5]
    if result ~= '' then k = k + 1 end
    if not mine or mine[ARGV[i]] then
      if job ~= '' and cap > 0 then
        record_history(KEYS[6], cap, job, ARGV[i + 2], 'succeeded', ARGV[i + 3], ARGV[i + 4],
          consumer, nil)
      end
      if result ~= '' then redis.call('SET', KEYS[k], result, 'PX', ttl) end
    end
    if job ~= '' then release_unique(KEYS[4], KEYS[5], ARGV[i + 6], job) end
  end
  if cap > 0 and tonumber(ARGV[5]) > 0 then trim_history(KEYS[6], now_ms(), ARGV[5]) end
else
  return redis.error_reply('ERR ack: bad mode')
end
redis.call('XDEL', stream, unpack(ids))
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HDEL', KEYS[3], unpack(ids)) end
if n > 0 then redis.call('HINCRBY', KEYS[2], 'processed', n) end
return n
