-- Claim a schedule's due fire times and enqueue their jobs, in one step:
-- a compare-and-set of the schedule's cursor (`last:<name>`: every fire
-- time up to it is accounted for) and the XADDs of the fires it claims.
-- Any number of workers may call it for the same fire; the first moves the
-- cursor, the others find it moved and enqueue nothing. So each fire time
-- is enqueued exactly once, with no leader.
-- KEYS[1] schedules hash, KEYS[2] ready stream
-- ARGV[1] schedule name
-- ARGV[2] the cursor the caller planned from ('' = none yet)
-- ARGV[3] the new cursor (unix ms; '' = server now, only with no fires)
-- ARGV[4] n, the number of fire times to enqueue
-- ARGV[5 .. 4+n] the fire times (unix ms, ascending, after the cursor, at
--   most the new cursor)
-- ARGV[5+n ..] the job's fields (flat, without `id`)
-- Returns {code, server now (unix ms), cursor after the call ('' = none)}:
-- code n >= 0: claimed, n jobs enqueued; -1: the cursor was not ARGV[2]
-- (another worker claimed first: plan again from the returned cursor);
-- -2: claimed while paused, nothing enqueued; -3: the new cursor is past
-- the server's clock (too early: wait).
local name = ARGV[1]
local n = tonumber(ARGV[4])
if not n or n < 0 or n > 1000 or n ~= math.floor(n) then
  return redis.error_reply('ERR cron.lua: bad fire count ' .. tostring(ARGV[4]))
end
local fires = {}
for i = 1, n do
  local f = tonumber(ARGV[4 + i])
  if not f or (i > 1 and f <= fires[i - 1]) then
    return redis.error_reply('ERR cron.lua: fire times must be ascending numbers')
  end
  fires[i] = f
end
local fields = {}
for i = 5 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
-- Room for the fields the script adds (id, enqueued_at, schedule, fire_at).
if #fields + 8 > MAX_FIELDS or #fields % 2 ~= 0 then
  return redis.error_reply('ERR cron.lua: bad job field list')
end
local new = nil
if ARGV[3] ~= '' then
  new = tonumber(ARGV[3])
  if not new then return redis.error_reply('ERR cron.lua: bad cursor') end
elseif n > 0 then
  return redis.error_reply('ERR cron.lua: fires need an explicit cursor')
end
if n > 0 and fires[n] > new then
  return redis.error_reply('ERR cron.lua: a fire time is past the new cursor')
end

local now = now_ms()
local last_field = 'last:' .. name
local cur = redis.call('HGET', KEYS[1], last_field)
if (cur or '') ~= ARGV[2] then return { -1, now, cur or '' } end
if new == nil then new = now end
if new > now then return { -3, now, cur or '' } end
if cur then
  if new <= tonumber(cur) then
    return redis.error_reply('ERR cron.lua: the cursor only moves forward')
  end
  if n > 0 and fires[1] <= tonumber(cur) then
    return redis.error_reply('ERR cron.lua: a fire time is not after the cursor')
  end
elseif n > 0 then
  return redis.error_reply('ERR cron.lua: the first claim only sets the cursor')
end

redis.call('HSET', KEYS[1], last_field, int(new))
if redis.call('HEXISTS', KEYS[1], 'paused:' .. name) == 1 then
  return { -2, now, int(new) }
end
for i = 1, n do
  local f = {}
  f[1] = 'id'; f[2] = name .. '@' .. int(fires[i])
  for j = 1, #fields do f[#f + 1] = fields[j] end
  f[#f + 1] = 'enqueued_at'; f[#f + 1] = int(now)
  f[#f + 1] = 'schedule';    f[#f + 1] = name
  f[#f + 1] = 'fire_at';     f[#f + 1] = int(fires[i])
  xadd(KEYS[2], {}, f)
end
if n > 0 then redis.call('HSET', KEYS[1], 'fired:' .. name, int(fires[n])) end
return { n, now, int(new) }
