-- A worker's upkeep tick for one queue, in one call: record that the
-- consumer is alive (on the server's clock) and tell whether the queue is
-- paused.
-- KEYS[1] workers zset, KEYS[2] paused key
-- ARGV[1] consumer
-- Returns {server time written (unix ms), 1 when paused else 0}.
local now = now_ms()
redis.call('ZADD', KEYS[1], int(now), ARGV[1])
return { now, redis.call('EXISTS', KEYS[2]) }
