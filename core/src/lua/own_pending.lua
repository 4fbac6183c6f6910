-- Entries pending for this consumer, with their fields: entries the server
-- delivered to a read whose reply never arrived (a dropped or abandoned
-- connection), or, at a worker's start, entries an earlier process of the
-- same consumer name left behind. Each id is checked again here: still
-- pending and still this consumer's.
-- After a reconnect ('keep') the entries are read with XRANGE, so their
-- delivery count is not raised: a reconnect is not a delivery. At a start
-- ('claim') they are claimed with XCLAIM, which raises it: a new process
-- starting them is a real new start, counted toward max deliveries.
-- KEYS[1] stream, KEYS[2] tries hash (attempt records of retried entries,
-- applied to their fields)
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] 'keep' | 'claim', ARGV[4..] entry ids
-- Returns {{id, fields | nil}, ...} (nil: deleted while pending).
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if owns(stream, group, consumer, id) then
    local e
    if ARGV[3] == 'claim' then
      e = redis.call('XCLAIM', stream, group, consumer, 0, id)
    else
      e = redis.call('XRANGE', stream, id, id)
    end
    if #e == 1 and e[1] then out[#out + 1] = e[1] else out[#out + 1] = { id, false } end
  end
end
return with_tries(KEYS[2], out)
