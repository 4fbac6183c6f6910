-- Remove a consumer from the group, atomically with the checks that make
-- it safe: nothing pending for it (XGROUP DELCONSUMER would drop its
-- pending entries for good), and, for pruning another worker, idle in the
-- group and silent in the heartbeat set, both on server time. One script,
-- so no entry can be delivered to it between the check and the deletion.
-- KEYS[1] stream, KEYS[2] workers zset
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] min group idle ms (0: skip the
-- check), ARGV[4] min heartbeat age ms (0: skip the check)
-- Returns 1 when removed, 0 when entries are pending for it, -1 when its
-- group idle time is below the minimum, -2 when its heartbeat is recent.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local exists = redis.call('EXISTS', stream) == 1
local in_group = false
if exists then
  local p = redis.call('XPENDING', stream, group, '-', '+', 1, consumer)
  if #p > 0 then return 0 end
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
    local name, idle = nil, nil
    for i = 1, #c, 2 do
      if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'idle' then idle = c[i + 1] end
    end
    if name == consumer then
      in_group = true
      if tonumber(ARGV[3]) > 0 and tonumber(idle) < tonumber(ARGV[3]) then return -1 end
    end
  end
end
if tonumber(ARGV[4]) > 0 then
  local beat = redis.call('ZSCORE', KEYS[2], consumer)
  if beat and now_ms() - tonumber(beat) < tonumber(ARGV[4]) then return -2 end
end
if in_group then redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer) end
redis.call('ZREM', KEYS[2], consumer)
return 1
