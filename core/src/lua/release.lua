-- Hand entries back at once (shutdown): re-add each owned entry to the ready
-- stream as it is, then acknowledge and delete the old one. The attempt
-- number is unchanged: a handed-back job did not fail.
-- KEYS[1] stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids
-- Returns how many entries were handed back.
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if owns(KEYS[1], ARGV[1], ARGV[2], id) then
    local e = redis.call('XRANGE', KEYS[1], id, id)
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    if #e == 1 then
      redis.call('XADD', KEYS[1], '*', unpack(e[1][2]))
      n = n + 1
    end
  end
end
return n
