-- Replay dead-lettered entries: re-add each to the ready stream as a fresh
-- first attempt (attempt 1, no error, no dead-letter fields), then delete it
-- from the dead-letter stream. One call is atomic, so a bulk replay that is
-- interrupted and run again never adds a job twice. A dead entry with too
-- many fields to re-add is left where it is. An entry whose `priority`
-- field names a lane (high, low) goes back to that lane's stream, and the
-- lane is recorded in the queue's lanes set (workers read it); any other
-- goes to the default lane's.
-- KEYS[1] stream (default lane), KEYS[2] dead stream, KEYS[3] high lane's
-- stream, KEYS[4] low lane's stream, KEYS[5] lanes set
-- ARGV[1..] dead entry ids
-- Returns how many entries were replayed (ids already gone are skipped).
local lanes = { high = KEYS[3], low = KEYS[4] }
local n = 0
for i = 1, #ARGV do
  local e = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])
  if #e == 1 and not bad_fields(e[1][2]) then
    local f = copy_fields(e[1][2], { attempt = true, error = true, dead_at = true, entry = true,
      deferred_since = true, deferrals = true })
    f[#f + 1] = 'attempt'; f[#f + 1] = '1'
    local lane = field(e[1][2], 'priority')
    local stream = lanes[lane] or KEYS[1]
    if lanes[lane] then redis.call('SADD', KEYS[5], lane) end
    xadd(stream, {}, f)
    redis.call('XDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
