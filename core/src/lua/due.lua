-- Claim retries whose backoff has passed back from the parking consumer for
-- a worker, with their attempt records. Only entries still parked
-- (pending for the parking consumer) are claimed: one XPENDING over the
-- range of the due ids fences them. XCLAIM with RETRYCOUNT 1: each attempt
-- starts its own count of deliveries, as a new entry would (max deliveries
-- catches a job that crashes its workers, not one that failed and retried).
-- Claimed with JUSTID: the caller reads the entries' fields itself (a
-- pipeline of XRANGE), which costs Redis less than passing every field
-- through Lua and back.
-- KEYS[1] stream, KEYS[2] retrying zset, KEYS[3] tries hash
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] most entries to claim
-- Returns {ms until the next parked retry is due (-1: none), claimed entry
-- ids, their attempt records (`<attempt>:<error>`, or false)}.
local stream, group, retrying = KEYS[1], ARGV[1], KEYS[2]
local limit = tonumber(ARGV[3])
if not limit or limit < 1 or limit > 10000 then
  return redis.error_reply('due: bad count ' .. tostring(ARGV[3]))
end
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', retrying, '-inf', int(now), 'LIMIT', 0, int(limit))
local claimed, records = {}, {}
if #ids > 0 then
  local lo, hi = ids[1], ids[1]
  for _, id in ipairs(ids) do
    if id_before(id, lo) then lo = id end
    if id_before(hi, id) then hi = id end
  end
  local parked = {}
  for _, e in ipairs(redis.call('XPENDING', stream, group, lo, hi, int(2 * #ids + 16), PARKED)) do
    parked[e[1]] = true
  end
  local claim, stale = { 'XCLAIM', stream, group, ARGV[2], '0' }, {}
  for _, id in ipairs(ids) do
    -- One no longer parked (requeued by hand) is only forgotten here.
    if parked[id] or owns(stream, group, PARKED, id) then claim[#claim + 1] = id end
  end
  redis.call('ZREM', retrying, unpack(ids))
  if #claim > 5 then
    claim[#claim + 1] = 'RETRYCOUNT'
    claim[#claim + 1] = '1'
    claim[#claim + 1] = 'JUSTID'
    claimed = redis.call(unpack(claim))
    -- Entries deleted while parked are dropped by XCLAIM: forget them too.
    local got = {}
    for _, id in ipairs(claimed) do got[id] = true end
    for j = 6, #claim - 3 do
      if not got[claim[j]] then stale[#stale + 1] = claim[j] end
    end
    if #claimed > 0 then records = redis.call('HMGET', KEYS[3], unpack(claimed)) end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[3], unpack(stale)) end
end
local nxt = redis.call('ZRANGE', retrying, 0, 0, 'WITHSCORES')
local wait = -1
if #nxt == 2 then wait = math.max(0, tonumber(nxt[2]) - now) end
return { wait, claimed, records }
