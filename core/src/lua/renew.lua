-- Renew the leases of running entries: reset their idle time, but only for
-- entries this consumer still owns; and tell which of them carry a cancel
-- mark (`millrace cancel`, `cancel.lua`), so their worker cancels them.
-- A mark past its expiry is ignored (the upkeep tick, `beat.lua`, drops it).
-- KEYS[1] stream, KEYS[2] cancel zset (entry id → mark expiry ms)
-- ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids
-- Returns {ids whose lease was lost, owned ids marked for cancellation}.
local lost, marked = {}, {}
local now = redis.call('EXISTS', KEYS[2]) == 1 and now_ms()
for i = 3, #ARGV do
  if owns(KEYS[1], ARGV[1], ARGV[2], ARGV[i]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    if now and (tonumber(redis.call('ZSCORE', KEYS[2], ARGV[i])) or 0) > now then
      marked[#marked + 1] = ARGV[i]
    end
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return { lost, marked }
