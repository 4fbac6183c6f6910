-- Make delayed jobs (scheduled or waiting for a retry) ready now: move each
-- from the delayed set to the ready stream, as promote.lua does for due
-- ones (a stored envelope that cannot be re-added is dead-lettered).
-- KEYS[1] delayed zset, KEYS[2] jobs hash, KEYS[3] stream, KEYS[4] dead stream,
-- KEYS[5] stats hash
-- ARGV[1] dead max entries, ARGV[2] dead max age ms, ARGV[3..] job ids
-- Returns how many jobs were moved (ids no longer delayed are skipped).
local n, buried = 0, 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) then
    local r = promote_one(KEYS[2], KEYS[3], KEYS[4], id, now_ms(), ARGV[1], ARGV[2])
    if r == 1 then n = n + 1 elseif r == 0 then buried = buried + 1 end
    redis.call('ZREM', KEYS[1], id)
  end
end
if buried > 0 then redis.call('HINCRBY', KEYS[5], 'dead', buried) end
return n
