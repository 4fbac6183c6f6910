-- Replay dead-lettered entries: re-add each to the ready stream as a fresh
-- first attempt (attempt 1, no error, no dead-letter fields), then delete it
-- from the dead-letter stream. One call is atomic, so a bulk replay that is
-- interrupted and run again never adds a job twice. A dead entry with too
-- many fields to re-add is left where it is.
-- KEYS[1] stream, KEYS[2] dead stream
-- ARGV[1..] dead entry ids
-- Returns how many entries were replayed (ids already gone are skipped).
local n = 0
for i = 1, #ARGV do
  local e = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])
  if #e == 1 and not bad_fields(e[1][2]) then
    local f = copy_fields(e[1][2], { attempt = true, error = true, dead_at = true, entry = true,
      deferred_since = true, deferrals = true })
    f[#f + 1] = 'attempt'; f[#f + 1] = '1'
    xadd(KEYS[1], {}, f)
    redis.call('XDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
