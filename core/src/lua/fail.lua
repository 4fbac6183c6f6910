-- A failed attempt: schedule the next attempt, defer an entry no worker
-- can run yet, or dead-letter it. Fenced: only the consumer that owns the
-- pending entry may do any of these. Everything is checked before the first
-- write (Redis never rolls back a script that fails halfway).
-- KEYS[1] stream, KEYS[2] jobs hash, KEYS[3] delayed zset, KEYS[4] dead stream,
-- KEYS[5] stats hash
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id, ARGV[4] 'retry' | 'dead' | 'defer',
-- ARGV[5] backoff ms (for 'defer': the first, doubled at each deferral),
-- ARGV[6] next attempt (unused by 'defer': the attempt is kept), ARGV[7] error,
-- ARGV[8] dead max entries, ARGV[9] dead max age ms,
-- ARGV[10] defer window ms ('defer' only: dead-letter once the entry has
-- been deferred this long, counted from its first deferral on server time)
-- Returns 0 when the lease was lost (another consumer owns the entry, or it
-- is no longer pending), 1 when a retry (or deferral) was scheduled, 2 when
-- the entry was dead-lettered, 3 when the entry was gone (acknowledged).
local stream, group, consumer, entry = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not owns(stream, group, consumer, entry) then return 0 end
local e = redis.call('XRANGE', stream, entry, entry)
if #e == 0 then
  redis.call('XACK', stream, group, entry)
  return 3
end
local fields = e[1][2]
local now = now_ms()
local mode, err = ARGV[4], ARGV[7]
local since, deferrals, delay = nil, nil, tonumber(ARGV[5])
if mode == 'defer' then
  -- Backoff doubles with each deferral, from ARGV[5] up to 64 times it.
  since = tonumber(field(fields, 'deferred_since') or '') or now
  deferrals = (tonumber(field(fields, 'deferrals') or '') or 0) + 1
  delay = delay * math.pow(2, math.min(deferrals - 1, 6))
  if now - since >= tonumber(ARGV[10]) then
    mode = 'dead'
    err = err .. ' (deferred since ' .. int(since) .. ', past the ' .. ARGV[10] .. ' ms window)'
  end
end
local bad = bad_fields(fields)
if bad and mode ~= 'dead' then
  mode = 'dead'
  err = bad .. '; dead-lettered instead of retried (last error: ' .. err .. ')'
end
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
if mode == 'dead' then
  bury(KEYS[4], fields, err, entry, now, ARGV[8], ARGV[9])
  redis.call('HINCRBY', KEYS[5], 'dead', 1)
  return 2
end
local id = field(fields, 'id') or entry
-- Another live job with the same id may be waiting already (ids are the
-- caller's to choose): never overwrite it, key this one by its entry too.
if redis.call('HEXISTS', KEYS[2], id) == 1 then id = id .. '~' .. entry end
-- A deferral keeps the attempt as it is: no handler ran.
local drop = { error = true, deferred_since = true, deferrals = true }
if not since then drop.attempt = true end
local f = copy_fields(fields, drop)
if not since then f[#f + 1] = 'attempt'; f[#f + 1] = ARGV[6] end
f[#f + 1] = 'error'; f[#f + 1] = err
if since then
  f[#f + 1] = 'deferred_since'; f[#f + 1] = int(since)
  f[#f + 1] = 'deferrals';      f[#f + 1] = int(deferrals)
end
redis.call('HSET', KEYS[2], id, cjson.encode(f))
redis.call('ZADD', KEYS[3], int(now + delay), id)
if mode == 'retry' then redis.call('HINCRBY', KEYS[5], 'retried', 1) end
return 1
