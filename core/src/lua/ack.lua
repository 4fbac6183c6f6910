-- Acknowledge finished entries and delete them, so the stream holds only
-- unfinished work.
-- KEYS[1] stream, KEYS[2] stats hash
-- ARGV[1] group, ARGV[2..] entry ids
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
if n > 0 then redis.call('HINCRBY', KEYS[2], 'processed', n) end
return n
