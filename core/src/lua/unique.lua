-- Enqueue jobs, each with an optional unique key, checking and taking the
-- key's lock in the same step (so many producers enqueueing one key at once
-- make one job). Per job, in order:
--   * no key: enqueue (XADD, or the delayed set for a delayed job);
--   * a live lock (not past its expiry) of a debounce job still waiting in
--     the delayed set, and this job is a debounce one too: that job's
--     envelope is replaced by this one (keeping its id) and its due time
--     moved to this one's: `debounced`;
--   * any other live lock: nothing is written: `duplicate` of its job;
--   * no live lock: enqueue, and lock the key for this job until its
--     expiry (while-live and throttle: now + ttl; debounce: due + ttl).
-- An expired lock counts as free and is overwritten; the workers' upkeep
-- tick (`beat.lua`) drops the others, so a producer needs no delete right.
-- Validates every job before its first write.
-- KEYS[1] stream, KEYS[2] jobs hash, KEYS[3] delayed zset, KEYS[4] unique
-- hash (key → `<mode>|<job id>`), KEYS[5] unique ttl zset (key → expiry ms)
-- ARGV[1] n jobs, then per job: unique key ('' = none), mode ('w' while
-- live, 't' throttle, 'd' debounce, '' with no key), ttl ms, when ('now' |
-- 'in' ms from server now | 'at' unix ms), ms, nf, nf field values (flat,
-- with `id`)
-- Returns per job two values: a code (0 new, 1 duplicate, 2 debounced,
-- -1 another job with this id is waiting in the delayed set) and the job id
-- (the existing job's for a duplicate or a debounce).
local n = tonumber(ARGV[1])
if not n or n < 0 or n ~= math.floor(n) then
  return redis.error_reply('ERR unique: bad job count')
end
local MODES, WHEN = { w = true, t = true, d = true }, { now = true, ['in'] = true, at = true }
local jobs, i = {}, 2
for j = 1, n do
  local key, mode = ARGV[i], ARGV[i + 1]
  local ttl, when, ms, nf = tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4]),
    tonumber(ARGV[i + 5])
  if not nf or nf < 0 or nf ~= math.floor(nf) or i + 5 + nf > #ARGV or not ttl or ttl < 1
    or not ms or not WHEN[when] or (key == '') ~= (mode == '') or (key ~= '' and not MODES[mode]) then
    return redis.error_reply('ERR unique: bad argument layout at job ' .. j)
  end
  local f = {}
  for k = 1, nf do f[k] = ARGV[i + 5 + k] end
  if bad_fields(f) or not field(f, 'id') then
    return redis.error_reply('ERR unique: bad field list at job ' .. j)
  end
  jobs[j] = { key = key, mode = mode, ttl = ttl, when = when, ms = ms, f = f }
  i = i + 6 + nf
end
if i ~= #ARGV + 1 then return redis.error_reply('ERR unique: bad argument layout') end

local uniq, expiry = KEYS[4], KEYS[5]
local now = now_ms()

local out = {}
for _, job in ipairs(jobs) do
  local id = field(job.f, 'id')
  local due = nil
  if job.when == 'in' then due = now + job.ms elseif job.when == 'at' then due = job.ms end
  local code, held = 0, nil
  if job.key ~= '' then
    held = redis.call('HGET', uniq, job.key)
    -- A lock without an expiry (written by hand) counts as expired: no key
    -- is ever locked for good.
    if held and (tonumber(redis.call('ZSCORE', expiry, job.key)) or 0) <= now then held = nil end
  end
  if held then
    local hmode, hid = string.sub(held, 1, 1), string.sub(held, 3)
    if job.mode == 'd' and hmode == 'd' then
      if due and redis.call('ZSCORE', KEYS[3], hid) then
        local f = {}
        for k = 1, #job.f, 2 do
          f[k] = job.f[k]
          f[k + 1] = job.f[k] == 'id' and hid or job.f[k + 1]
        end
        redis.call('HSET', KEYS[2], hid, cjson.encode(f))
        redis.call('ZADD', KEYS[3], int(due), hid)
        redis.call('ZADD', expiry, int(due + job.ttl), job.key)
        code, id = 2, hid
      else
        held = nil -- its job is ready or running: this one is new
      end
    else
      code, id = 1, hid
    end
  end
  if not held then
    if due and redis.call('HGET', KEYS[2], id) then
      code = -1
    else
      if due then
        redis.call('HSET', KEYS[2], id, cjson.encode(job.f))
        redis.call('ZADD', KEYS[3], int(due), id)
      else
        xadd(KEYS[1], {}, job.f)
      end
      if job.key ~= '' then
        redis.call('HSET', uniq, job.key, job.mode .. '|' .. id)
        local base = now
        if job.mode == 'd' and due then base = due end
        redis.call('ZADD', expiry, int(base + job.ttl), job.key)
      end
    end
  end
  out[#out + 1] = code
  out[#out + 1] = id
end
return out
