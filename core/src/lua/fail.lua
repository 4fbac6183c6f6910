-- Failed attempts, one record each, in one call: schedule the next attempt,
-- defer an entry no worker can run yet, or dead-letter it. Fenced: only the
-- consumer that owns a pending entry may do any of these for it. Every
-- record is checked (fence, fields, window) before the first write: Redis
-- never rolls back a script that fails halfway.
-- KEYS[1] stream, KEYS[2] jobs hash, KEYS[3] delayed zset, KEYS[4] dead stream,
-- KEYS[5] stats hash, KEYS[6] tries hash (attempt records of entries retried
-- in place: `<attempt>:<error>`), KEYS[7] unique hash, KEYS[8] unique ttl
-- zset (a dead-lettered job's unique lock is released here), KEYS[9]
-- history stream, KEYS[10] cancel zset (cancel marks: a marked entry whose
-- attempt failed is not retried but ends as cancelled, code 4)
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] dead max entries, ARGV[4] dead max age ms,
-- ARGV[5] history cap (0 = no history), ARGV[6] history max age ms (0 = none),
-- then one record per failed entry, its entry id and mode first:
--   entry, 'later', backoff ms, job id, the next attempt as a stored
--          envelope (JSON array of flat fields), kept in the jobs hash until due;
--   entry, 'retry', backoff ms, error, next attempt number: the entry is
--          read and copied here;
--   entry, 'again', next attempt, error: a retry with no backoff, run again
--          by the caller at once: the entry is not copied nor acknowledged,
--          only its attempt record is written (it stays pending for the
--          caller, and whoever reads it next applies the record);
--   entry, 'dead', error, run time ms ('' = unknown): the entry is read and
--          dead-lettered;
--   entry, 'defer', backoff ms, error, window ms: the entry is read and
--          stored again with its attempt unchanged, the backoff doubled at
--          each deferral (up to 64 times); dead-lettered once it has been
--          deferred for the window (from its first deferral, on server time).
-- 'later' carries what the caller read from the entry (entries never
-- change; attempt record applied), so the entry is not read again. An
-- entry the script reads has its attempt record applied; every mode but
-- 'again' ends the entry, and its attempt record with it. Records in entry id order fence
-- with one XPENDING for the whole range (any other order still works, one
-- XPENDING per entry). Every dead-letter is also recorded in the history
-- (`record_history`) when the history cap is above 0.
-- Returns one code per record: 0 when the lease was lost (another consumer
-- owns the entry, or it is no longer pending), 1 when a retry (or deferral)
-- was scheduled, 2 when dead-lettered, 3 when the entry was gone (deleted
-- while pending: acknowledged, nothing kept; told for the modes that read
-- the entry), 4 when a retry (or deferral) was due but the entry carries a
-- cancel mark (`cancel.lua` marked it while the attempt ran): it ends as
-- cancelled instead (unique lock released, history, `cancelled` counter),
-- then how many 'later' entries had been deleted while
-- pending (written all the same, see below).
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local tries = KEYS[6]
local ARITY = { later = 3, retry = 3, dead = 2, defer = 3, again = 2 }

-- First pass: parse and check every record, fence them; no writes.
-- at[k]: index of record k's first value (after its mode); modes[k]: its mode.
-- A backoff must be a number: checked here, used in the second pass. An
-- entry given twice would be retried twice: refused.
local entries, at, modes, seen = {}, {}, {}, {}
local nargs, i, count = #ARGV, 7, 0
while i <= nargs do
  local m = ARGV[i + 1]
  count = count + 1
  local k = count
  entries[k], modes[k] = ARGV[i], m
  if seen[ARGV[i]] then return redis.error_reply('fail: entry ' .. ARGV[i] .. ' given twice') end
  seen[ARGV[i]] = true
  local n = ARITY[m]
  if not n then return redis.error_reply('fail: unknown mode ' .. tostring(m)) end
  if i + 1 + n > nargs or (m ~= 'dead' and not tonumber(ARGV[i + 2]))
    or (m == 'again' and not string.match(ARGV[i + 2], '^%d+$')) then
    return redis.error_reply('fail: bad record for ' .. ARGV[i])
  end
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
local codes, owned, info, nowned = {}, {}, {}, 0
local again = { 'HSET', tries }
for k = 1, count do
  local entry, m = entries[k], modes[k]
  if not (mine[entry] or owns(stream, group, consumer, entry)) then
    codes[k] = 0
  elseif m == 'again' then
    -- Stays pending for the caller, which runs it again: only the record.
    again[#again + 1] = entry
    again[#again + 1] = ARGV[at[k]] .. ':' .. ARGV[at[k] + 1]
    codes[k] = 1
  else
    nowned = nowned + 1
    owned[nowned] = entry
    if m ~= 'later' then
      -- Read the entry: the rare modes copy it server-side.
      local e = with_tries(tries, redis.call('XRANGE', stream, entry, entry))
      if #e == 0 then
        codes[k] = 3
      else
        local a, fields = at[k], e[1][2]
        local r = { fields = fields, mode = m, err = ARGV[a], delay = 0, ms = '' }
        if m ~= 'dead' then r.err, r.delay = ARGV[a + 1], tonumber(ARGV[a]) else r.ms = ARGV[a + 1] end
        if m == 'defer' then
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
          r.err = bad .. '; dead-lettered instead of retried (last error: ' .. r.err .. ')'
        end
        info[k] = r
      end
    end
  end
end
local retried, buried = #again / 2 - 1, 0
if #again > 2 then redis.call(unpack(again)) end
if nowned == 0 then
  if retried > 0 then redis.call('HINCRBY', KEYS[5], 'retried', retried) end
  codes[count + 1] = 0
  return codes
end

-- Second pass: write. Acknowledge every owned entry, and delete those that
-- are still there, each with one call. An entry whose fields the caller
-- brought is not read here, so one deleted by hand while its attempt ran
-- is not told apart: its retry is written all the same, and the call
-- returns how many such entries XDEL did not find.
redis.call('XACK', stream, group, unpack(owned))
if redis.call('EXISTS', tries) == 1 then redis.call('HDEL', tries, unpack(owned)) end
local del, ndel = {}, 0
for k = 1, count do
  if not codes[k] then
    ndel = ndel + 1
    del[ndel] = entries[k]
  end
end
local missing = 0
if ndel > 0 then missing = ndel - redis.call('XDEL', stream, unpack(del)) end
local store = {}
local hcap = tonumber(ARGV[5]) or 0
for k = 1, count do
  local a, r = at[k], info[k]
  if codes[k] then
    -- lease lost or gone: nothing more
  elseif not r then
    -- 'later': the next attempt as the caller built it.
    store[#store + 1] = { k, ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a]) }
  elseif r.mode == 'dead' then
    bury(KEYS[4], r.fields, r.err, entries[k], now, ARGV[3], ARGV[4])
    release_unique_of(KEYS[7], KEYS[8], r.fields)
    if hcap > 0 then
      record_history(KEYS[9], hcap, field(r.fields, 'id') or entries[k], field(r.fields, 'name') or '',
        'dead', field(r.fields, 'attempt') or '1', r.ms, consumer, r.err)
    end
    codes[k] = 2
    buried = buried + 1
  else
    -- 'retry' or 'defer': the next attempt from the entry read above. A
    -- deferral keeps the attempt as it is: no handler ran.
    local drop = { error = true, deferred_since = true, deferrals = true }
    if r.mode == 'retry' then drop.attempt = true end
    local f = copy_fields(r.fields, drop)
    if r.mode == 'retry' then f[#f + 1] = 'attempt'; f[#f + 1] = ARGV[a + 2] end
    f[#f + 1] = 'error'; f[#f + 1] = r.err
    if r.mode == 'defer' then
      f[#f + 1] = 'deferred_since'; f[#f + 1] = int(r.since)
      f[#f + 1] = 'deferrals';      f[#f + 1] = int(r.deferrals)
    end
    store[#store + 1] = { k, field(r.fields, 'id') or entries[k], cjson.encode(f), r.delay }
  end
end
-- A cancel mark that landed while the attempt ran: the job ends here as
-- cancelled rather than being stored for its next attempt.
local cancelled = 0
if #store > 0 and redis.call('EXISTS', KEYS[10]) == 1 then
  local kept = {}
  for s = 1, #store do
    local k = store[s][1]
    if redis.call('ZSCORE', KEYS[10], entries[k]) then
      redis.call('ZREM', KEYS[10], entries[k])
      local f = stored_fields(store[s][3])
      if f then
        release_unique_of(KEYS[7], KEYS[8], f)
        if hcap > 0 then
          record_history(KEYS[9], hcap, field(f, 'id') or store[s][2], field(f, 'name') or '',
            'cancelled', field(f, 'attempt') or '1', '', consumer, nil)
        end
      end
      codes[k] = 4
      cancelled = cancelled + 1
    else
      kept[#kept + 1] = store[s]
    end
  end
  store = kept
end
if cancelled > 0 then
  redis.call('HINCRBY', KEYS[5], 'cancelled', cancelled)
  if hcap > 0 then trim_history(KEYS[9], now, ARGV[6]) end
end
if #store > 0 then
  -- Another live job with the same id may be waiting already (ids are the
  -- caller's to choose), or come earlier in this call: never overwrite it,
  -- key this one by its entry too.
  local ids = {}
  for s = 1, #store do ids[s] = store[s][2] end
  local held = redis.call('HMGET', KEYS[2], unpack(ids))
  local taken, hset, zadd, due = {}, { 'HSET', KEYS[2] }, { 'ZADD', KEYS[3] }, {}
  for s = 1, #store do
    local k, id, delay = store[s][1], store[s][2], store[s][4]
    if held[s] or taken[id] then id = id .. '~' .. entries[k] end
    taken[id] = true
    -- Backoffs repeat within a call: format each due time once.
    local at = due[delay]
    if not at then at = int(now + delay); due[delay] = at end
    local h, z = #hset, #zadd
    hset[h + 1] = id; hset[h + 2] = store[s][3]
    zadd[z + 1] = at; zadd[z + 2] = id
    codes[k] = 1
    if modes[k] ~= 'defer' then retried = retried + 1 end
  end
  redis.call(unpack(hset))
  redis.call(unpack(zadd))
end
if retried > 0 then redis.call('HINCRBY', KEYS[5], 'retried', retried) end
if buried > 0 then
  redis.call('HINCRBY', KEYS[5], 'dead', buried)
  if hcap > 0 then trim_history(KEYS[9], now, ARGV[6]) end
end
codes[count + 1] = missing
return codes
