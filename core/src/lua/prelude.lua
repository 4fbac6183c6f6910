-- Shared helpers, prepended to every Millrace script at build time.

-- Server time in whole milliseconds (scripts never trust a client clock).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An integer as a plain decimal string (Lua would print 1.7e+12).
local function int(n)
  return string.format('%d', n)
end

-- Most values in an entry's flat field list (names and values counted
-- apart: 64 name/value pairs). Scripts pass field lists to XADD with
-- `unpack`, which fails past ~8,000 values, so every script checks this
-- before its first write; `envelope::MAX_FIELDS` is the same number.
local MAX_FIELDS = 128

-- The envelope's own field names: what a dead-letter keeps of an entry with
-- too many fields.
local ENVELOPE = { v = true, id = true, name = true, payload = true, attempt = true,
  max_attempts = true, enqueued_at = true, trace = true, unique = true }

-- Why a flat field list cannot be copied with XADD, or nil when it can.
local function bad_fields(fields)
  if #fields > MAX_FIELDS then
    return 'entry has ' .. math.floor(#fields / 2) .. ' fields (at most ' ..
      (MAX_FIELDS / 2) .. ' allowed)'
  end
  if #fields % 2 ~= 0 then return 'entry has an odd field list' end
  return nil
end

-- Copy a flat field list {k1, v1, k2, v2, ...}, leaving out the names in `drop`.
local function copy_fields(fields, drop)
  local out = {}
  for i = 1, #fields, 2 do
    if not drop[fields[i]] then
      out[#out + 1] = fields[i]
      out[#out + 1] = fields[i + 1]
    end
  end
  return out
end

-- A stored envelope (JSON array of flat fields) as a field list ready for
-- `xadd`, or nil and why not.
local function stored_fields(env)
  local ok, f = pcall(cjson.decode, env)
  if not ok or type(f) ~= 'table' then return nil, 'not a JSON array' end
  local bad = bad_fields(f)
  if bad then return nil, bad end
  for i = 1, #f do
    if type(f[i]) ~= 'string' then return nil, 'not a flat list of strings' end
  end
  return f, nil
end

-- XADD a flat field list to `key` (after optional leading arguments such
-- as MAXLEN). Callers check `bad_fields` first, so the list `unpack` sees
-- is bounded.
local function xadd(key, pre, fields)
  local args = { 'XADD', key }
  for i = 1, #pre do args[#args + 1] = pre[i] end
  args[#args + 1] = '*'
  for i = 1, #fields do args[#args + 1] = fields[i] end
  return redis.call(unpack(args))
end

-- The value of field `name` in a flat field list, or nil.
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- True when `consumer` owns pending entry `id` of `group` on `stream`.
local function owns(stream, group, consumer, id)
  local p = redis.call('XPENDING', stream, group, id, id, '1')
  return #p == 1 and p[1][2] == consumer
end

-- Append an entry to the dead-letter stream with its error, the time and the
-- original entry id, then trim by count and by age (0 disables either).
-- Trimming is exact (not `~`): dead-letters are rare, and a retention of
-- 10 entries should mean 10.
-- An entry with too many fields keeps only the envelope's own fields (the
-- error says how many it had).
local function bury(dead, fields, err, entry, now, maxlen, maxage)
  local f
  if #fields > MAX_FIELDS or #fields % 2 ~= 0 then
    f = {}
    for i = 1, #fields - 1, 2 do
      if ENVELOPE[fields[i]] and #f < 2 * 16 then
        f[#f + 1] = fields[i]; f[#f + 1] = fields[i + 1]
      end
    end
  else
    f = copy_fields(fields, { error = true, dead_at = true, entry = true })
  end
  f[#f + 1] = 'error';   f[#f + 1] = err
  f[#f + 1] = 'dead_at'; f[#f + 1] = int(now)
  f[#f + 1] = 'entry';   f[#f + 1] = entry
  if tonumber(maxlen) > 0 then
    xadd(dead, { 'MAXLEN', maxlen }, f)
  else
    xadd(dead, {}, f)
  end
  if tonumber(maxage) > 0 then
    redis.call('XTRIM', dead, 'MINID', int(now - tonumber(maxage)))
  end
end

-- Move one delayed job (member `id`) to the ready stream: its stored
-- envelope is re-added, or dead-lettered with the reason when it cannot be
-- (not JSON, not a flat list of strings, too many fields); then it leaves
-- the jobs hash. Returns 1 when moved, 0 when dead-lettered, -1 when it had
-- no envelope. The caller removes `id` from the delayed set.
local function promote_one(jobs, stream, dead, id, now, maxlen, maxage)
  local env = redis.call('HGET', jobs, id)
  if not env then return -1 end
  local f, why = stored_fields(env)
  if f then
    xadd(stream, {}, f)
  else
    bury(dead, { 'id', id, 'envelope', string.sub(env, 1, 4096) },
      'stored envelope cannot be promoted: ' .. why, '', now, maxlen, maxage)
  end
  redis.call('HDEL', jobs, id)
  if f then return 1 end
  return 0
end

-- A retried-in-place entry's fields with its attempt record
-- (`<attempt>:<error>`, from the tries hash) applied: the stream entry
-- itself keeps its first attempt's fields, as entries never change.
local function retried_fields(fields, t)
  if not t then return fields end
  local n, err = string.match(t, '^(%d+):(.*)$')
  if not n then return fields end
  local f = copy_fields(fields, { attempt = true, error = true })
  f[#f + 1] = 'attempt'; f[#f + 1] = n
  f[#f + 1] = 'error';   f[#f + 1] = err
  return f
end

-- Entries as XCLAIM and XRANGE return them ({id, fields}, or false for one
-- deleted meanwhile), with the attempt records of retried ones applied.
-- One EXISTS, and one HMGET when any entry of the queue is being retried.
-- Callers bound the list.
local function with_tries(tries, entries)
  if #entries == 0 or redis.call('EXISTS', tries) == 0 then return entries end
  local ids, at = {}, {}
  for i, e in ipairs(entries) do
    if e and e[2] then
      ids[#ids + 1] = e[1]
      at[#ids] = i
    end
  end
  if #ids == 0 then return entries end
  local t = redis.call('HMGET', tries, unpack(ids))
  for j = 1, #ids do
    if t[j] then
      local e = entries[at[j]]
      e[2] = retried_fields(e[2], t[j])
    end
  end
  return entries
end


-- Release the unique lock `key` (`uniq` hash, `ttl` zset of expiries) held
-- by job `id`, as its job ends (success, dead-letter, cancel): only when
-- the lock still names this job (a later job may hold the key now), and
-- never a throttle lock (`t|`), which lasts its TTL whatever the outcome.
-- `key` nil or '' (a job without a unique key) does nothing.
local function release_unique(uniq, ttl, key, id)
  if not key or key == '' or not id then return end
  local v = redis.call('HGET', uniq, key)
  if v and string.sub(v, 3) == id and string.sub(v, 1, 1) ~= 't' then
    redis.call('HDEL', uniq, key)
    redis.call('ZREM', ttl, key)
  end
end

-- The same, for a job known by its flat field list (its `unique` and `id`).
local function release_unique_of(uniq, ttl, fields)
  release_unique(uniq, ttl, field(fields, 'unique'), field(fields, 'id'))
end

-- The history of finished jobs (`<prefix>:{q}:history`, a capped stream):
-- one entry per outcome, its entry id the finish time (server time, as
-- XADD `*` picks it). Every script that ends a job calls this once per job
-- when the caller's history cap is above 0: ack.lua (succeeded), fail.lua
-- and reclaim.lua (dead), and a cancel script (cancelled). The caller names
-- `key` in its KEYS. `outcome` is 'succeeded', 'dead' or 'cancelled';
-- `attempts` and `ms` (the last attempt's run time) are strings ('' when
-- unknown); `err` is nil for a success (the entry then has the same six
-- fields as every other success, which the stream stores once per node).
-- Trimming is approximate (`MAXLEN ~`: whole nodes of 100 entries), so
-- the stream holds from `cap` to about `cap` + 100 entries.
local function record_history(key, cap, id, name, outcome, attempts, ms, consumer, err)
  if err then
    redis.call('XADD', key, 'MAXLEN', '~', cap, '*', 'id', id, 'name', name,
      'outcome', outcome, 'attempts', attempts, 'ms', ms, 'consumer', consumer,
      'error', string.sub(err, 1, 1024))
  else
    redis.call('XADD', key, 'MAXLEN', '~', cap, '*', 'id', id, 'name', name,
      'outcome', outcome, 'attempts', attempts, 'ms', ms, 'consumer', consumer)
  end
end

-- Drops history entries finished more than `max_age` ms before `now`
-- (approximately: whole nodes). Called once per script call, not per
-- entry; `max_age` '0' keeps them (the count cap still applies).
local function trim_history(key, now, max_age)
  local age = tonumber(max_age) or 0
  if age > 0 then redis.call('XTRIM', key, 'MINID', '~', int(now - age)) end
end
