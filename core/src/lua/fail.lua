-- Failed attempts, one record each, in one call: retry in place, park for
-- a backoff, defer an entry no worker can run yet, or dead-letter it.
-- Fenced: only the consumer that owns a pending entry may do any of these
-- for it. Every record is checked (fence, fields, window) before the first
-- write: Redis never rolls back a script that fails halfway.
-- A retried entry is never copied: it stays in the stream, and its attempt
-- number and last error go to the tries hash (`<attempt>:<error>`, applied
-- to its fields wherever it is read again, see `with_tries`).
-- KEYS[1] stream, KEYS[2] jobs hash, KEYS[3] delayed zset, KEYS[4] dead stream,
-- KEYS[5] stats hash, KEYS[6] tries hash, KEYS[7] retrying zset
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] dead max entries, ARGV[4] dead max age ms,
-- then one record per failed entry, its entry id and mode first:
--   entry, 'park', backoff ms, next attempt, error: the entry moves to the
--          parking consumer (XCLAIM JUSTID: its delivery count is kept)
--          and into the retrying set, due after the backoff on server
--          time; a worker's fetch loop claims it back when due (`due.lua`);
--   entry, 'again', next attempt, error: the entry stays pending for this
--          consumer, which runs it again at once (a retry with no backoff);
--   entry, 'dead', error: the entry is read and dead-lettered;
--   entry, 'defer', backoff ms, error, window ms: the entry is read and
--          stored again with its attempt unchanged, the backoff doubled at
--          each deferral (up to 64 times); dead-lettered once it has been
--          deferred for the window (from its first deferral, on server time).
-- Records in entry id order fence with one XPENDING for the whole range
-- (any other order still works, one XPENDING per entry).
-- Returns one code per record: 0 when the lease was lost (another consumer
-- owns the entry, or it is no longer pending), 1 when a retry (or deferral)
-- was written, 2 when dead-lettered, 3 when the entry was gone (deleted
-- while pending: acknowledged, nothing kept), then how many parked entries
-- had been deleted while pending (XCLAIM dropped them: nothing kept).
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local tries, retrying = KEYS[6], KEYS[7]
local ARITY = { park = 3, again = 2, dead = 1, defer = 3 }

-- First pass: parse and check every record, fence them; no writes.
-- at[k]: index of record k's first value (after its mode); modes[k]: its mode.
-- A backoff and an attempt must be numbers: checked here, used in the
-- second pass. An entry given twice would be retried twice: refused.
local entries, at, modes, seen = {}, {}, {}, {}
local nargs, i, count = #ARGV, 5, 0
while i <= nargs do
  local m = ARGV[i + 1]
  count = count + 1
  local k = count
  entries[k], modes[k] = ARGV[i], m
  if seen[ARGV[i]] then return redis.error_reply('fail: entry ' .. ARGV[i] .. ' given twice') end
  seen[ARGV[i]] = true
  local n = ARITY[m]
  if not n then return redis.error_reply('fail: unknown mode ' .. tostring(m)) end
  local bad = i + 1 + n > nargs
  if m == 'park' or m == 'defer' then
    bad = bad or not tonumber(ARGV[i + 2])
  end
  if m == 'park' then bad = bad or not string.match(ARGV[i + 3], '^%d+$') end
  if m == 'again' then bad = bad or not string.match(ARGV[i + 2], '^%d+$') end
  if bad then return redis.error_reply('fail: bad record for ' .. ARGV[i]) end
  at[k] = i + 2
  i = i + 2 + n
end
if count == 0 then return { 0 } end

-- The fence: the pending entries of this consumer between the first and the
-- last record's entry; a record not among them is checked on its own.
local mine = {}
local p = redis.call('XPENDING', stream, group, entries[1], entries[count],
  int(2 * count + 16), consumer)
for _, e in ipairs(p) do mine[e[1]] = true end

local now = now_ms()
local codes, info, read = {}, {}, {}
local owned = 0
for k = 1, count do
  local entry, m = entries[k], modes[k]
  if not (mine[entry] or owns(stream, group, consumer, entry)) then
    codes[k] = 0
  else
    owned = owned + 1
    if m == 'dead' or m == 'defer' then read[#read + 1] = k end
  end
end
if owned == 0 then
  codes[count + 1] = 0
  return codes
end

-- The rare modes read the entry (with its attempt record) and copy it.
local done = {}
for _, k in ipairs(read) do
  local entry, m, a = entries[k], modes[k], at[k]
  local e = with_tries(tries, redis.call('XRANGE', stream, entry, entry))
  done[#done + 1] = entry
  if #e == 0 then
    codes[k] = 3
  else
    local fields = e[1][2]
    local r = { fields = fields, mode = m, err = ARGV[a], delay = 0 }
    if m == 'defer' then
      r.err, r.delay = ARGV[a + 1], tonumber(ARGV[a])
      r.since = tonumber(field(fields, 'deferred_since') or '') or now
      r.deferrals = (tonumber(field(fields, 'deferrals') or '') or 0) + 1
      r.delay = r.delay * math.pow(2, math.min(r.deferrals - 1, 6))
      local window = ARGV[a + 2]
      if now - r.since >= (tonumber(window) or 0) then
        r.mode = 'dead'
        r.err = r.err .. ' (deferred since ' .. int(r.since) .. ', past the ' .. window ..
          ' ms window)'
      end
    end
    local bad = bad_fields(fields)
    if bad and r.mode ~= 'dead' then
      r.mode = 'dead'
      r.err = bad .. '; dead-lettered instead of deferred (last error: ' .. r.err .. ')'
    end
    info[k] = r
  end
end

-- Second pass: write.
local retried, buried, vanished = 0, 0, 0
if #done > 0 then
  -- Dead-lettered and deferred entries leave the stream and the tries hash.
  redis.call('XACK', stream, group, unpack(done))
  redis.call('XDEL', stream, unpack(done))
  redis.call('HDEL', tries, unpack(done))
end
local park, hset, zadd = {}, { 'HSET', tries }, { 'ZADD', retrying }
for k = 1, count do
  local m, a = modes[k], at[k]
  if codes[k] then
    -- lease lost or gone: nothing more
  elseif m == 'park' then
    park[#park + 1] = entries[k]
  elseif m == 'again' then
    hset[#hset + 1] = entries[k]
    hset[#hset + 1] = ARGV[a] .. ':' .. ARGV[a + 1]
    codes[k] = 1
    retried = retried + 1
  end
end
if #park > 0 then
  -- Entries deleted while pending are dropped by XCLAIM (Redis 7): those
  -- are not parked.
  local claim = { 'XCLAIM', stream, group, PARKED, '0' }
  for _, id in ipairs(park) do claim[#claim + 1] = id end
  claim[#claim + 1] = 'JUSTID'
  local moved = {}
  for _, id in ipairs(redis.call(unpack(claim))) do
    moved[id] = true
  end
  local due = {}
  for k = 1, count do
    if modes[k] == 'park' and not codes[k] then
      local a = at[k]
      if moved[entries[k]] then
        local delay = ARGV[a]
        local when = due[delay]
        if not when then when = int(now + tonumber(delay)); due[delay] = when end
        hset[#hset + 1] = entries[k]
        hset[#hset + 1] = ARGV[a + 1] .. ':' .. ARGV[a + 2]
        zadd[#zadd + 1] = when
        zadd[#zadd + 1] = entries[k]
        codes[k] = 1
        retried = retried + 1
      else
        codes[k] = 3
        vanished = vanished + 1
      end
    end
  end
end
if #hset > 2 then redis.call(unpack(hset)) end
if #zadd > 2 then redis.call(unpack(zadd)) end

local store = {}
for k = 1, count do
  local r = info[k]
  if codes[k] then
    -- written above, or lost, or gone
  elseif r.mode == 'dead' then
    bury(KEYS[4], r.fields, r.err, entries[k], now, ARGV[3], ARGV[4])
    codes[k] = 2
    buried = buried + 1
  else
    -- A deferral: stored again for later, attempt as it is (no handler ran).
    local f = copy_fields(r.fields, { error = true, deferred_since = true, deferrals = true })
    f[#f + 1] = 'error';          f[#f + 1] = r.err
    f[#f + 1] = 'deferred_since'; f[#f + 1] = int(r.since)
    f[#f + 1] = 'deferrals';      f[#f + 1] = int(r.deferrals)
    store[#store + 1] = { k, field(r.fields, 'id') or entries[k], cjson.encode(f), r.delay }
  end
end
if #store > 0 then
  -- Another live job with the same id may be waiting already (ids are the
  -- caller's to choose), or come earlier in this call: never overwrite it,
  -- key this one by its entry too.
  local ids = {}
  for s = 1, #store do ids[s] = store[s][2] end
  local held = redis.call('HMGET', KEYS[2], unpack(ids))
  local taken, jset, jadd = {}, { 'HSET', KEYS[2] }, { 'ZADD', KEYS[3] }
  for s = 1, #store do
    local k, id = store[s][1], store[s][2]
    if held[s] or taken[id] then id = id .. '~' .. entries[k] end
    taken[id] = true
    jset[#jset + 1] = id;  jset[#jset + 1] = store[s][3]
    jadd[#jadd + 1] = int(now + store[s][4]); jadd[#jadd + 1] = id
    codes[k] = 1
  end
  redis.call(unpack(jset))
  redis.call(unpack(jadd))
end
if retried > 0 then redis.call('HINCRBY', KEYS[5], 'retried', retried) end
if buried > 0 then redis.call('HINCRBY', KEYS[5], 'dead', buried) end
codes[count + 1] = vanished
return codes
