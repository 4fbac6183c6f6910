-- Store a job to run later: its envelope in the jobs hash, its due time in
-- the delayed set. An id scheduled twice keeps the last envelope.
-- KEYS[1] jobs hash, KEYS[2] delayed zset
-- ARGV[1] job id, ARGV[2] 'in' (ms from server now) | 'at' (unix ms),
-- ARGV[3] ms, ARGV[4..] envelope fields
-- Returns the due time (unix ms, server clock).
local due = tonumber(ARGV[3])
if ARGV[2] == 'in' then due = now_ms() + due end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({ unpack(ARGV, 4) }))
redis.call('ZADD', KEYS[2], int(due), ARGV[1])
return due
