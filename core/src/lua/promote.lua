-- Move due jobs from the delayed set to the ready stream. Atomic, so any
-- number of workers may run it at once without duplicating or dropping a job.
-- A stored envelope that cannot be re-added (missing, not JSON, not a flat
-- list of strings, too many fields) is dead-lettered with the reason, so one
-- bad envelope never blocks the due jobs behind it (its unique lock is
-- released when the envelope still decodes to a list that names one).
-- The batch's envelopes are read with one HMGET and removed with one HDEL
-- and one ZREM; each is checked (decoded, counted, typed) before the first
-- write.
-- KEYS[1] delayed zset, KEYS[2] jobs hash, KEYS[3] stream, KEYS[4] dead stream,
-- KEYS[5] stats hash, KEYS[6] unique hash, KEYS[7] unique ttl zset
-- ARGV[1] most jobs to move, ARGV[2] dead max entries, ARGV[3] dead max age ms
-- Returns {moved, ms until the next due job or -1 when none, dead-lettered}.
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, ARGV[1])
local moved, buried = 0, 0
if #ids > 0 then
  local envs = redis.call('HMGET', KEYS[2], unpack(ids))
  -- `stored_fields` inlined, with its functions in locals: this loop is
  -- most of a promoted job's cost.
  local fields, why, listed = {}, {}, {}
  local decode, type = cjson.decode, type
  for k = 1, #ids do
    local env = envs[k]
    if env then
      local ok, f = pcall(decode, env)
      if not ok or type(f) ~= 'table' then
        why[k] = 'not a JSON array'
      else
        local bad = bad_fields(f)
        for j = 1, bad and 0 or #f do
          if type(f[j]) ~= 'string' then
            bad = 'not a flat list of strings'
            break
          end
        end
        if bad then why[k], listed[k] = bad, f else fields[k] = f end
      end
    end
  end
  for k, id in ipairs(ids) do
    local f = fields[k]
    if f then
      redis.call('XADD', KEYS[3], '*', unpack(f))
      moved = moved + 1
    elseif envs[k] then
      bury(KEYS[4], { 'id', id, 'envelope', string.sub(envs[k], 1, 4096) },
        'stored envelope cannot be promoted: ' .. why[k], '', now, ARGV[2], ARGV[3])
      local key = listed[k] and field(listed[k], 'unique')
      if type(key) == 'string' then release_unique(KEYS[6], KEYS[7], key, id) end
      buried = buried + 1
    end
  end
  redis.call('HDEL', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
end
if buried > 0 then redis.call('HINCRBY', KEYS[5], 'dead', buried) end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #nxt == 2 then wait = math.max(0, tonumber(nxt[2]) - now) end
return { moved, wait, buried }
