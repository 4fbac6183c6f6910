-- A failed attempt: schedule the next attempt or dead-letter the entry.
-- Fenced: only the consumer that owns the pending entry may do either.
-- KEYS[1] stream, KEYS[2] jobs hash, KEYS[3] delayed zset, KEYS[4] dead stream,
-- KEYS[5] stats hash
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id, ARGV[4] 'retry' | 'dead',
-- ARGV[5] backoff ms, ARGV[6] next attempt, ARGV[7] error,
-- ARGV[8] dead max entries, ARGV[9] dead max age ms
-- Returns 1 when done, 0 when the lease was lost (another consumer owns the
-- entry, or it is no longer pending).
local stream, group, consumer, entry = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not owns(stream, group, consumer, entry) then return 0 end
local e = redis.call('XRANGE', stream, entry, entry)
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
if #e == 0 then return 0 end
local fields = e[1][2]
local now = now_ms()
if ARGV[4] == 'retry' then
  local id = field(fields, 'id') or entry
  local f = copy_fields(fields, { attempt = true, error = true })
  f[#f + 1] = 'attempt'; f[#f + 1] = ARGV[6]
  f[#f + 1] = 'error';   f[#f + 1] = ARGV[7]
  redis.call('HSET', KEYS[2], id, cjson.encode(f))
  redis.call('ZADD', KEYS[3], int(now + tonumber(ARGV[5])), id)
  redis.call('HINCRBY', KEYS[5], 'retried', 1)
else
  bury(KEYS[4], fields, ARGV[7], entry, now, ARGV[8], ARGV[9])
  redis.call('HINCRBY', KEYS[5], 'dead', 1)
end
return 1
