-- End an attempt cancelled by `cancel.lua`'s mark: acknowledge and delete
-- the entry (not retried, not dead-lettered), drop its attempt record and
-- its mark, release its job's unique lock and count it. Fenced: only the
-- consumer that owns the pending entry may.
-- KEYS[1] stream, KEYS[2] stats hash, KEYS[3] tries hash, KEYS[4] unique
-- hash, KEYS[5] unique ttl zset, KEYS[6] cancel zset
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id, ARGV[4] unique key
-- ('' = none), ARGV[5] job id
-- Returns 1 when written, 0 when the lease was lost.
local entry = ARGV[3]
if not owns(KEYS[1], ARGV[1], ARGV[2], entry) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], entry)
redis.call('XDEL', KEYS[1], entry)
redis.call('HDEL', KEYS[3], entry)
redis.call('ZREM', KEYS[6], entry)
release_unique(KEYS[4], KEYS[5], ARGV[4], ARGV[5])
redis.call('HINCRBY', KEYS[2], 'cancelled', 1)
return 1
