-- Pause a queue: workers stop claiming while the key exists. Its value
-- records when (server time) and why, for the CLI.
-- KEYS[1] paused key
-- ARGV[1] reason ('' for none)
-- Returns the pause time (unix ms).
local now = now_ms()
redis.call('SET', KEYS[1], cjson.encode({ at = now, reason = ARGV[1] }))
return now
