-- Move due jobs from the delayed set to the ready stream. Atomic, so any
-- number of workers may run it at once without duplicating or dropping a job.
-- KEYS[1] delayed zset, KEYS[2] jobs hash, KEYS[3] stream
-- ARGV[1] most jobs to move
-- Returns {moved, ms until the next due job or -1 when none}.
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, ARGV[1])
for _, id in ipairs(ids) do
  local env = redis.call('HGET', KEYS[2], id)
  if env then
    redis.call('XADD', KEYS[3], '*', unpack(cjson.decode(env)))
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('ZREM', KEYS[1], id)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #nxt == 2 then wait = math.max(0, tonumber(nxt[2]) - now) end
return { #ids, wait }
