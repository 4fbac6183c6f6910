-- Acknowledge finished entries and delete them, so the stream holds only
-- unfinished work; a retried entry's attempt record goes with it.
-- KEYS[1] stream, KEYS[2] stats hash, KEYS[3] tries hash
-- ARGV[1] group, ARGV[2..] entry ids
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HDEL', KEYS[3], unpack(ARGV, 2)) end
if n > 0 then redis.call('HINCRBY', KEYS[2], 'processed', n) end
return n
