-- Relay outbox rows to one queue, exactly once. Each row carries a mark
-- (its outbox id and job id); a row whose mark is already in the relayed
-- set was relayed before (by a relay that died before deleting the row)
-- and is skipped. Otherwise it is added to the ready stream (mode 'now')
-- or stored in the delayed set like schedule.lua does (mode 'at'), and its
-- mark is recorded with the server time. Marks older than the retention are
-- trimmed; the relay also removes marks itself once the rows' delete has
-- committed.
-- KEYS[1] stream, KEYS[2] jobs hash, KEYS[3] delayed zset, KEYS[4] relayed zset
-- ARGV[1] mark retention ms, ARGV[2] rows, then per row:
--   mark, mode ('now' | 'at'), due unix ms, n (field values), n values
-- Returns one code per row: 1 added, 2 scheduled, 0 relayed before (no-op),
-- -1 another job with this id is waiting in the delayed set, -2 bad fields.
-- Validates everything before its first write: the argument layout, the
-- key types, each row's fields.
local want = { 'stream', 'hash', 'zset', 'zset' }
for k = 1, 4 do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= want[k] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' is a ' .. t .. ', not a ' .. want[k])
  end
end
local n = tonumber(ARGV[2])
if not n or n < 0 then return redis.error_reply('ERR relay: bad row count') end
local rows = {}
local i = 3
for r = 1, n do
  local nf = tonumber(ARGV[i + 3])
  if not nf or nf < 0 or i + 3 + nf > #ARGV then
    return redis.error_reply('ERR relay: bad argument layout at row ' .. r)
  end
  local f = {}
  for j = 1, nf do f[j] = ARGV[i + 3 + j] end
  rows[r] = { mark = ARGV[i], mode = ARGV[i + 1], due = ARGV[i + 2], f = f }
  i = i + 4 + nf
end
local now = now_ms()
local out = {}
for r = 1, n do
  local row = rows[r]
  if redis.call('ZSCORE', KEYS[4], row.mark) then
    out[r] = 0
  elseif bad_fields(row.f) or not field(row.f, 'id') then
    out[r] = -2
  elseif row.mode == 'at' then
    local id = field(row.f, 'id')
    local env = cjson.encode(row.f)
    local old = redis.call('HGET', KEYS[2], id)
    if old and old ~= env then
      out[r] = -1
    else
      if not old then
        redis.call('HSET', KEYS[2], id, env)
        redis.call('ZADD', KEYS[3], row.due, id)
      end
      redis.call('ZADD', KEYS[4], int(now), row.mark)
      out[r] = 2
    end
  else
    xadd(KEYS[1], {}, row.f)
    redis.call('ZADD', KEYS[4], int(now), row.mark)
    out[r] = 1
  end
end
local retention = tonumber(ARGV[1])
if retention and retention > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. int(now - retention))
end
return out
