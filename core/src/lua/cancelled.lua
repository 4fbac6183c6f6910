-- End an attempt cancelled by `cancel.lua`'s mark: acknowledge and delete
-- the entry (not retried, not dead-lettered), drop its attempt record and
-- its mark, release its job's unique lock, record it in the history as
-- cancelled and count it. Fenced: only the consumer that owns the pending
-- entry may.
-- KEYS[1] stream, KEYS[2] stats hash, KEYS[3] tries hash, KEYS[4] unique
-- hash, KEYS[5] unique ttl zset, KEYS[6] cancel zset, KEYS[7] history stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id, ARGV[4] unique key
-- ('' = none), ARGV[5] job id, ARGV[6] history cap (0 = no history),
-- ARGV[7] history max age ms, ARGV[8] job name, ARGV[9] attempt, ARGV[10]
-- run time ms
-- Returns 1 when written, 0 when the lease was lost.
local entry = ARGV[3]
local hcap = tonumber(ARGV[6])
if not hcap or hcap < 0 then return redis.error_reply('ERR cancelled: bad history cap') end
if not owns(KEYS[1], ARGV[1], ARGV[2], entry) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], entry)
redis.call('XDEL', KEYS[1], entry)
redis.call('HDEL', KEYS[3], entry)
redis.call('ZREM', KEYS[6], entry)
release_unique(KEYS[4], KEYS[5], ARGV[4], ARGV[5])
if hcap > 0 and ARGV[5] ~= '' then
  record_history(KEYS[7], hcap, ARGV[5], ARGV[8], 'cancelled', ARGV[9], ARGV[10], ARGV[2], nil)
  trim_history(KEYS[7], now_ms(), ARGV[7])
end
redis.call('HINCRBY', KEYS[2], 'cancelled', 1)
return 1
