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

-- The value of field `name` in a flat field list, or nil.
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- True when `consumer` owns pending entry `id` of `group` on `stream`.
local function owns(stream, group, consumer, id)
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  return #p == 1 and p[1][2] == consumer
end

-- Append an entry to the dead-letter stream with its error, the time and the
-- original entry id, then trim by count and by age (0 disables either).
-- Trimming is exact (not `~`): dead-letters are rare, and a retention of
-- 10 entries should mean 10.
local function bury(dead, fields, err, entry, now, maxlen, maxage)
  local f = copy_fields(fields, { error = true, dead_at = true, entry = true })
  f[#f + 1] = 'error';   f[#f + 1] = err
  f[#f + 1] = 'dead_at'; f[#f + 1] = int(now)
  f[#f + 1] = 'entry';   f[#f + 1] = entry
  if tonumber(maxlen) > 0 then
    redis.call('XADD', dead, 'MAXLEN', maxlen, '*', unpack(f))
  else
    redis.call('XADD', dead, '*', unpack(f))
  end
  if tonumber(maxage) > 0 then
    redis.call('XTRIM', dead, 'MINID', int(now - tonumber(maxage)))
  end
end
