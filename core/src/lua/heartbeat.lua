-- Record that a consumer is alive, on the server's clock (every liveness
-- time is server time: a worker's own clock may be skewed).
-- KEYS[1] workers zset
-- ARGV[1] consumer
-- Returns the server time written (unix ms).
local now = now_ms()
redis.call('ZADD', KEYS[1], int(now), ARGV[1])
return now
