-- A worker's upkeep tick for one queue, in one call: record that the
-- consumer is alive (on the server's clock) and tell whether the queue is
-- paused; drop up to 100 expired unique locks and 100 expired cancel marks
-- (the producer's enqueue script only overwrites expired locks: producers
-- need no delete right).
-- KEYS[1] workers zset, KEYS[2] paused key, KEYS[3] unique hash, KEYS[4]
-- unique ttl zset, KEYS[5] cancel zset
-- ARGV[1] consumer
-- Returns {server time written (unix ms), 1 when paused else 0}.
local now = now_ms()
redis.call('ZADD', KEYS[1], int(now), ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', int(now), 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('HDEL', KEYS[3], unpack(old))
  redis.call('ZREM', KEYS[4], unpack(old))
end
old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', int(now), 'LIMIT', 0, 100)
if #old > 0 then redis.call('ZREM', KEYS[5], unpack(old)) end
return { now, redis.call('EXISTS', KEYS[2]) }
