-- Cancel one job (`millrace cancel`, `Client::cancel`): a delayed job is
-- removed; a stream entry not yet delivered is deleted; a delivered one
-- (running) gets a cancel mark that its worker's lease renewal sees
-- (`renew.lua`): the worker cancels the attempt and ends it with
-- `cancelled.lua`. A job removed here has its unique lock released.
-- KEYS[1] stream, KEYS[2] jobs hash, KEYS[3] delayed zset, KEYS[4] unique
-- hash, KEYS[5] unique ttl zset, KEYS[6] cancel zset (entry id → mark
-- expiry ms), KEYS[7] stats hash, KEYS[8] history stream
-- ARGV[1] group, ARGV[2] job id, ARGV[3] the job's stream entry id ('' =
-- look in the delayed set only), ARGV[4] mark life ms, ARGV[5] history cap
-- (0 = no history), ARGV[6] history max age ms (0 = none)
-- A job removed here is recorded in the history as cancelled.
-- Returns 1 removed from the delayed set, 2 removed from the stream, 3
-- marked (running), 0 not in the delayed set (ARGV[3] ''), -1 the entry is
-- gone or is not this job's.
local id, entry = ARGV[2], ARGV[3]
local life = tonumber(ARGV[4])
local hcap = tonumber(ARGV[5])
if not life or life < 1 then return redis.error_reply('ERR cancel: bad mark life') end
if not hcap or hcap < 0 then return redis.error_reply('ERR cancel: bad history cap') end
local function recorded(f)
  if hcap > 0 and f then
    record_history(KEYS[8], hcap, field(f, 'id') or id, field(f, 'name') or '', 'cancelled',
      field(f, 'attempt') or '1', '', '', nil)
    trim_history(KEYS[8], now_ms(), ARGV[6])
  end
end
if entry == '' then
  local env = redis.call('HGET', KEYS[2], id)
  if not redis.call('ZSCORE', KEYS[3], id) then return 0 end
  local f = env and stored_fields(env)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[2], id)
  if f then release_unique_of(KEYS[4], KEYS[5], f) end
  recorded(f)
  redis.call('HINCRBY', KEYS[7], 'cancelled', 1)
  return 1
end
local e = redis.call('XRANGE', KEYS[1], entry, entry)
if #e == 0 or field(e[1][2], 'id') ~= id then return -1 end
-- A stream enqueued to before any worker declared its group has none yet:
-- nothing of it is pending then.
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], entry, entry, 1)
if type(p) == 'table' and not p.err and #p == 1 then
  redis.call('ZADD', KEYS[6], int(now_ms() + life), entry)
  return 3
end
redis.call('XDEL', KEYS[1], entry)
release_unique_of(KEYS[4], KEYS[5], e[1][2])
recorded(e[1][2])
redis.call('HINCRBY', KEYS[7], 'cancelled', 1)
return 2
