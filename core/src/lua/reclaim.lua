-- Take over entries whose lease expired (idle past the lease), and
-- dead-letter those delivered max-deliveries times without an outcome.
-- Entries retried in place carry their attempt record (applied here).
-- A dead-lettered job's unique lock is released.
-- KEYS[1] stream, KEYS[2] dead stream, KEYS[3] stats hash, KEYS[4] tries hash,
-- KEYS[5] unique hash, KEYS[6] unique ttl zset, KEYS[7] history stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] count,
-- ARGV[5] max deliveries, ARGV[6] dead max entries, ARGV[7] dead max age ms,
-- ARGV[8] history cap (0 = no history), ARGV[9] history max age ms
-- A dead-lettered entry is recorded in the history as dead, with the
-- consumer that last held it and no run time.
-- Returns {claimed entries as XCLAIM returns them (attempt records
-- applied), number dead-lettered}.
local stream, group = KEYS[1], ARGV[1]
local pending = redis.call('XPENDING', stream, group, 'IDLE', ARGV[3], '-', '+', ARGV[4])
local claim, buried, gone = {}, 0, {}
for _, p in ipairs(pending) do
  local id, deliveries = p[1], tonumber(p[4])
  if p[2] == ARGV[2] then
    -- ours: found by the own-pending sweep, never by reclaim
  elseif deliveries >= tonumber(ARGV[5]) then
    local e = with_tries(KEYS[4], redis.call('XRANGE', stream, id, id))
    if #e == 1 then
      local err = 'delivered ' .. deliveries .. ' times without an outcome (max_deliveries ' ..
        ARGV[5] .. '): the job keeps crashing or stalling its worker'
      local now = now_ms()
      bury(KEYS[2], e[1][2], err, id, now, ARGV[6], ARGV[7])
      release_unique_of(KEYS[5], KEYS[6], e[1][2])
      if (tonumber(ARGV[8]) or 0) > 0 then
        local f = e[1][2]
        record_history(KEYS[7], ARGV[8], field(f, 'id') or id, field(f, 'name') or '', 'dead',
          field(f, 'attempt') or '1', '', p[2], err)
        trim_history(KEYS[7], now, ARGV[9])
      end
      buried = buried + 1
    end
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    gone[#gone + 1] = id
  else
    claim[#claim + 1] = id
  end
end
if #gone > 0 then redis.call('HDEL', KEYS[4], unpack(gone)) end
if buried > 0 then redis.call('HINCRBY', KEYS[3], 'dead', buried) end
local claimed = {}
if #claim > 0 then
  claimed = with_tries(KEYS[4], redis.call('XCLAIM', stream, group, ARGV[2], ARGV[3], unpack(claim)))
end
return { claimed, buried }
