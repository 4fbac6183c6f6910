-- Make delayed jobs (scheduled or waiting for a retry) ready now: move each
-- from the delayed set to the ready stream, as promote.lua does for due ones.
-- KEYS[1] delayed zset, KEYS[2] jobs hash, KEYS[3] stream
-- ARGV[1..] job ids
-- Returns how many jobs were moved (ids no longer delayed are skipped).
local n = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) then
    local env = redis.call('HGET', KEYS[2], id)
    if env then
      redis.call('XADD', KEYS[3], '*', unpack(cjson.decode(env)))
      n = n + 1
    end
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[1], id)
  end
end
return n
