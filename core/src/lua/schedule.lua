-- Store a job to run later: its envelope in the jobs hash, its due time in
-- the delayed set. An id already waiting there is never overwritten: the
-- same envelope sent again (a retried call) is a no-op that returns the
-- existing due time; a different one is refused.
-- KEYS[1] jobs hash, KEYS[2] delayed zset
-- ARGV[1] job id, ARGV[2] 'in' (ms from server now) | 'at' (unix ms),
-- ARGV[3] ms, ARGV[4..] envelope fields
-- Returns the due time (unix ms, server clock), or -1 when another job with
-- this id is waiting, -2 when the envelope has too many fields.
local f = {}
for i = 4, #ARGV do f[#f + 1] = ARGV[i] end
if bad_fields(f) then return -2 end
local env = cjson.encode(f)
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  if old == env then return tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1])) or -1 end
  return -1
end
local due = tonumber(ARGV[3])
if ARGV[2] == 'in' then due = now_ms() + due end
redis.call('HSET', KEYS[1], ARGV[1], env)
redis.call('ZADD', KEYS[2], int(due), ARGV[1])
return due
