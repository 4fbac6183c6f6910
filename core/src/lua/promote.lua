-- Move due jobs from the delayed set to the ready stream. Atomic, so any
-- number of workers may run it at once without duplicating or dropping a job.
-- A stored envelope that cannot be re-added (not JSON, not a flat list of
-- strings, too many fields) is dead-lettered with the reason, so one bad
-- envelope never blocks the due jobs behind it.
-- KEYS[1] delayed zset, KEYS[2] jobs hash, KEYS[3] stream, KEYS[4] dead stream,
-- KEYS[5] stats hash
-- ARGV[1] most jobs to move, ARGV[2] dead max entries, ARGV[3] dead max age ms
-- Returns {moved, ms until the next due job or -1 when none, dead-lettered}.
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, ARGV[1])
local moved, buried = 0, 0
for _, id in ipairs(ids) do
  local r = promote_one(KEYS[2], KEYS[3], KEYS[4], id, now, ARGV[2], ARGV[3])
  if r == 1 then moved = moved + 1 elseif r == 0 then buried = buried + 1 end
  redis.call('ZREM', KEYS[1], id)
end
if buried > 0 then redis.call('HINCRBY', KEYS[5], 'dead', buried) end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #nxt == 2 then wait = math.max(0, tonumber(nxt[2]) - now) end
return { moved, wait, buried }
