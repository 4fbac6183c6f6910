-- Failed attempts, one record each, in one call: schedule the next attempt,
-- defer an entry no worker can run yet, or dead-letter it. Fenced: only the
-- consumer that owns a pending entry may do any of these for it. Every
-- record is checked (fence, fields, window) before the first write: Redis
-- never rolls back a script that fails halfway.
-- KEYS[1] stream, KEYS[2] jobs hash, KEYS[3] delayed zset, KEYS[4] dead stream,
-- KEYS[5] stats hash
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] dead max entries, ARGV[4] dead max age ms,
-- then one record per failed entry: entry id, mode, backoff ms, error, n, and n
-- values, by mode:
--   'now'   the next attempt's flat fields, XADDed to the stream at once (a
--           retry with no backoff never goes through the delayed set);
--   'later' job id, the next attempt as a stored envelope (JSON array of
--           flat fields), kept in the jobs hash until due;
--   'retry' next attempt number: the entry is read and copied here;
--   'dead'  nothing: the entry is read and dead-lettered;
--   'defer' defer window ms: the entry is read and stored again with its
--           attempt unchanged, the backoff doubled at each deferral (up to
--           64 times); dead-lettered once it has been deferred for the
--           window (from its first deferral, on server time).
-- 'now' and 'later' carry what the caller read from the entry (entries never
-- change), so the entry is not read again.
-- Returns one code per record: 0 when the lease was lost (another consumer
-- owns the entry, or it is no longer pending), 1 when a retry (or deferral)
-- was scheduled, 2 when dead-lettered, 3 when the entry was gone (deleted
-- while pending: acknowledged, nothing kept).
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local now = now_ms()
local recs, owned = {}, {}

-- First pass: parse, fence and check every record; no writes.
local i = 5
while i <= #ARGV do
  local r = { entry = ARGV[i], mode = ARGV[i + 1], delay = tonumber(ARGV[i + 2]),
    err = ARGV[i + 3], first = i + 5, last = i + 4 + (tonumber(ARGV[i + 4]) or -1) }
  if r.last < r.first - 1 or r.last > #ARGV or not r.delay then
    return redis.error_reply('fail: malformed record at argument ' .. i)
  end
  i = r.last + 1
  local n = r.last - r.first + 1
  local m = r.mode
  if m == 'now' then
    if n == 0 or n > MAX_FIELDS or n % 2 ~= 0 then
      return redis.error_reply('fail: bad field list for ' .. r.entry)
    end
  elseif m == 'later' then
    if n ~= 2 then return redis.error_reply('fail: bad stored envelope for ' .. r.entry) end
  elseif m == 'retry' or m == 'defer' then
    if n ~= 1 then return redis.error_reply('fail: bad record for ' .. r.entry) end
  elseif m ~= 'dead' then
    return redis.error_reply('fail: unknown mode ' .. tostring(m))
  end
  recs[#recs + 1] = r
  if not owns(stream, group, consumer, r.entry) then
    r.code = 0
  elseif m == 'now' or m == 'later' then
    owned[#owned + 1] = r.entry
  else
    owned[#owned + 1] = r.entry
    local e = redis.call('XRANGE', stream, r.entry, r.entry)
    if #e == 0 then
      r.code = 3
    else
      local fields = e[1][2]
      r.fields = fields
      if m == 'defer' then
        r.since = tonumber(field(fields, 'deferred_since') or '') or now
        r.deferrals = (tonumber(field(fields, 'deferrals') or '') or 0) + 1
        r.delay = r.delay * math.pow(2, math.min(r.deferrals - 1, 6))
        local window = ARGV[r.first] or '0'
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
    end
  end
end
if #owned == 0 then
  local codes = {}
  for k, r in ipairs(recs) do codes[k] = r.code end
  return codes
end

-- Second pass: write. Acknowledge every owned entry at once; delete the
-- entries one by one where the caller brought the fields, as XDEL is what
-- tells whether such an entry was deleted while pending.
redis.call('XACK', stream, group, unpack(owned))
local read = {}
for _, r in ipairs(recs) do
  if not r.code and r.fields then read[#read + 1] = r.entry end
end
if #read > 0 then redis.call('XDEL', stream, unpack(read)) end
local retried, buried = 0, 0
local store = {}
for _, r in ipairs(recs) do
  if r.code then
    -- lease lost or gone: nothing more
  elseif not r.fields and redis.call('XDEL', stream, r.entry) == 0 then
    r.code = 3
  elseif r.mode == 'now' then
    redis.call('XADD', stream, '*', unpack(ARGV, r.first, r.last))
    r.code = 1
    retried = retried + 1
  elseif r.mode == 'dead' then
    bury(KEYS[4], r.fields, r.err, r.entry, now, ARGV[3], ARGV[4])
    r.code = 2
    buried = buried + 1
  elseif r.mode == 'later' then
    store[#store + 1] = { r, ARGV[r.first], ARGV[r.first + 1] }
  else
    -- 'retry' or 'defer': the next attempt from the entry read above. A
    -- deferral keeps the attempt as it is: no handler ran.
    local drop = { error = true, deferred_since = true, deferrals = true }
    if r.mode == 'retry' then drop.attempt = true end
    local f = copy_fields(r.fields, drop)
    if r.mode == 'retry' then f[#f + 1] = 'attempt'; f[#f + 1] = ARGV[r.first] end
    f[#f + 1] = 'error'; f[#f + 1] = r.err
    if r.mode == 'defer' then
      f[#f + 1] = 'deferred_since'; f[#f + 1] = int(r.since)
      f[#f + 1] = 'deferrals';      f[#f + 1] = int(r.deferrals)
    end
    store[#store + 1] = { r, field(r.fields, 'id') or r.entry, cjson.encode(f) }
  end
end
if #store > 0 then
  -- Another live job with the same id may be waiting already (ids are the
  -- caller's to choose), or come earlier in this call: never overwrite it,
  -- key this one by its entry too.
  local ids = {}
  for k, s in ipairs(store) do ids[k] = s[2] end
  local held = redis.call('HMGET', KEYS[2], unpack(ids))
  local taken, hset, zadd = {}, { 'HSET', KEYS[2] }, { 'ZADD', KEYS[3] }
  for k, s in ipairs(store) do
    local r, id = s[1], s[2]
    if held[k] or taken[id] then id = id .. '~' .. r.entry end
    taken[id] = true
    hset[#hset + 1] = id; hset[#hset + 1] = s[3]
    zadd[#zadd + 1] = int(now + r.delay); zadd[#zadd + 1] = id
    r.code = 1
    if r.mode ~= 'defer' then retried = retried + 1 end
  end
  redis.call(unpack(hset))
  redis.call(unpack(zadd))
end
if retried > 0 then redis.call('HINCRBY', KEYS[5], 'retried', retried) end
if buried > 0 then redis.call('HINCRBY', KEYS[5], 'dead', buried) end
local codes = {}
for k, r in ipairs(recs) do codes[k] = r.code end
return codes
