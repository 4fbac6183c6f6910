-- Hand entries back at once (shutdown): re-add each owned entry to the ready
-- stream as it is, then acknowledge and delete the old one. The attempt
-- number is unchanged: a handed-back job did not fail (a retried entry's
-- copy carries its attempt record, which leaves the tries hash). An entry
-- that cannot be re-added (too many fields) is dead-lettered with the
-- reason instead (its unique lock released).
-- KEYS[1] stream, KEYS[2] dead stream, KEYS[3] stats hash, KEYS[4] tries hash,
-- KEYS[5] unique hash, KEYS[6] unique ttl zset
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] dead max entries,
-- ARGV[4] dead max age ms, ARGV[5..] entry ids
-- Returns how many entries were handed back.
local n, buried = 0, 0
for i = 5, #ARGV do
  local id = ARGV[i]
  if owns(KEYS[1], ARGV[1], ARGV[2], id) then
    local e = with_tries(KEYS[4], redis.call('XRANGE', KEYS[1], id, id))
    local bad = #e == 1 and bad_fields(e[1][2])
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[4], id)
    if bad then
      bury(KEYS[2], e[1][2], bad, id, now_ms(), ARGV[3], ARGV[4])
      release_unique_of(KEYS[5], KEYS[6], e[1][2])
      buried = buried + 1
    elseif #e == 1 then
      xadd(KEYS[1], {}, e[1][2])
      n = n + 1
    end
  end
end
if buried > 0 then redis.call('HINCRBY', KEYS[3], 'dead', buried) end
return n
