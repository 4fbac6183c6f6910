-- Make stuck pending entries runnable again now. For each entry that, when
-- the script runs, is still pending, idle at least the minimum and (when a
-- consumer is given) held by that consumer: re-add a copy of it to the ready
-- stream, then acknowledge and delete the old one. An entry whose lease a
-- live worker renewed meanwhile is left alone. The attempt number is
-- unchanged: the job did not fail. An entry with too many fields to re-add
-- is left alone (skipped): the worker that runs it dead-letters it. A
-- retried entry's copy carries its attempt record.
-- KEYS[1] stream, KEYS[2] tries hash
-- ARGV[1] group, ARGV[2] min idle ms, ARGV[3] consumer or '', ARGV[4..] entry ids
-- Returns {requeued, dropped (pending but its entry deleted), skipped}.
local stream, group = KEYS[1], ARGV[1]
local requeued, dropped, skipped = 0, 0, 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', stream, group, 'IDLE', ARGV[2], id, id, 1)
  local e = (#p == 1 and (ARGV[3] == '' or p[1][2] == ARGV[3]))
    and with_tries(KEYS[2], redis.call('XRANGE', stream, id, id))
  if e and not (#e == 1 and bad_fields(e[1][2])) then
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    redis.call('HDEL', KEYS[2], id)
    if #e == 1 then
      xadd(stream, {}, e[1][2])
      requeued = requeued + 1
    else
      dropped = dropped + 1
    end
  else
    skipped = skipped + 1
  end
end
return { requeued, dropped, skipped }
