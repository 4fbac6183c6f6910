-- Acknowledge finished entries and delete them, so the stream holds only
-- unfinished work; a retried entry's attempt record goes with it.
-- KEYS[1] stream, KEYS[2] stats hash, KEYS[3] tries hash, KEYS[4] history
-- stream, KEYS[5..] result keys, one per record that carries a result, in
-- record order.
-- ARGV[1] group, ARGV[2] mode:
--   'ids': ARGV[3..] entry ids (no history, no results): one XACK for all;
--   'full': ARGV[3] consumer, ARGV[4] history cap (entries; 0 = no
--     history), ARGV[5] history max age ms (0 = none), ARGV[6] result TTL
--     ms, then one record of 6 per entry: entry id, job id, job name,
--     attempts, run time ms, result ('' = none, else JSON stored in the
--     next result key with the TTL). Only an entry this call acknowledged
--     (still pending: not acked meanwhile by a worker that took it over)
--     gets its history entry and its result, so a job run twice is
--     recorded once. A record with an empty job id (an entry deleted while
--     pending) only acknowledges.
-- Returns how many entries were pending.
local stream, group = KEYS[1], ARGV[1]
local n, ids = 0, nil
if ARGV[2] == 'ids' then
  n = redis.call('XACK', stream, group, unpack(ARGV, 3))
  ids = { unpack(ARGV, 3) }
else
  local consumer, cap, ttl = ARGV[3], tonumber(ARGV[4]) or 0, ARGV[6]
  if (#ARGV - 6) % 6 ~= 0 then return redis.error_reply('ack: bad record list') end
  ids = {}
  for i = 7, #ARGV, 6 do ids[#ids + 1] = ARGV[i] end
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
  local k = 4
  for i = 7, #ARGV, 6 do
    local job, result = ARGV[i + 1], ARGV[i + 5]
    if result ~= '' then k = k + 1 end
    if not mine or mine[ARGV[i]] then
      if job ~= '' and cap > 0 then
        record_history(KEYS[4], cap, job, ARGV[i + 2], 'succeeded', ARGV[i + 3], ARGV[i + 4],
          consumer, nil)
      end
      if result ~= '' then redis.call('SET', KEYS[k], result, 'PX', ttl) end
    end
  end
  if cap > 0 and tonumber(ARGV[5]) > 0 then trim_history(KEYS[4], now_ms(), ARGV[5]) end
end
redis.call('XDEL', stream, unpack(ids))
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HDEL', KEYS[3], unpack(ids)) end
if n > 0 then redis.call('HINCRBY', KEYS[2], 'processed', n) end
return n
