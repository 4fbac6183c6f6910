-- Acknowledge finished entries and delete them, so the stream holds only
-- unfinished work; a retried entry's attempt record goes with it, and the
-- unique locks of the jobs that succeeded are released (a throttle lock
-- stays for its TTL; a lock a later job holds now is left alone).
-- KEYS[1] stream, KEYS[2] stats hash, KEYS[3] tries hash,
-- KEYS[4] unique hash, KEYS[5] unique ttl zset
-- ARGV[1] group, ARGV[2] n, the number of entry ids, ARGV[3 .. 2+n] entry
-- ids, then (unique key, job id) pairs of the locks to release
local n = tonumber(ARGV[2])
if not n or n < 1 or 2 + n > #ARGV or (#ARGV - 2 - n) % 2 ~= 0 then
  return redis.error_reply('ERR ack: bad argument layout')
end
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3, 2 + n))
redis.call('XDEL', KEYS[1], unpack(ARGV, 3, 2 + n))
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HDEL', KEYS[3], unpack(ARGV, 3, 2 + n)) end
for i = 3 + n, #ARGV, 2 do release_unique(KEYS[4], KEYS[5], ARGV[i], ARGV[i + 1]) end
if acked > 0 then redis.call('HINCRBY', KEYS[2], 'processed', acked) end
return acked
