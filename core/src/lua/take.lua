-- A worker's read across the lanes of one queue, highest first: up to
-- ARGV[3] new entries for consumer ARGV[2] of group ARGV[1], from the
-- lanes' streams KEYS[1..n] in the order given; a lane is read only for
-- the count the lanes before it left. This is the non-blocking half of a
-- multi-lane fetch: when it finds nothing, it returns each lane's group
-- position (last-delivered id), and the worker blocks with XREAD on the
-- lanes after those ids, which claims nothing, then calls this again.
-- A lane whose group is missing (Redis lost it) fails the call only when
-- nothing was delivered yet: delivered entries are never left unreported.
-- KEYS[1..n] lane streams, in serving order
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] count
-- Returns { { {lane index, entries}, ... }, { last-delivered id per lane } }
-- (the ids only when no entry was found).
local group, consumer = ARGV[1], ARGV[2]
local left = tonumber(ARGV[3])
if not left or left < 1 or #KEYS < 1 then
  return redis.error_reply('ERR take: bad count or no lanes')
end
local out = {}
for i = 1, #KEYS do
  if left <= 0 then break end
  local r = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left, 'STREAMS', KEYS[i], '>')
  if type(r) == 'table' and r.err then
    if #out == 0 then return r end
    break
  end
  if r and r[1] and #r[1][2] > 0 then
    out[#out + 1] = { i, r[1][2] }
    left = left - #r[1][2]
  end
end
local last = {}
if #out == 0 then
  for i = 1, #KEYS do
    local pos = '0-0'
    local groups = redis.pcall('XINFO', 'GROUPS', KEYS[i])
    if type(groups) == 'table' and not groups.err then
      for _, g in ipairs(groups) do
        local name, id
        for j = 1, #g, 2 do
          if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then id = g[j + 1] end
        end
        if name == group and id then pos = id end
      end
    end
    last[i] = pos
  end
end
return { out, last }
