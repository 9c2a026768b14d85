-- heartbeat.lua: extend a lease held under the current fencing token. An expired lease is never
-- revived, even if no other worker has taken the item yet.
-- KEYS: items, deadlines
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = item id
-- ARGV[3] = fencing token
-- ARGV[4] = lease time-to-live (ms)
-- Reply: {'ok', new deadline (ms)} | {'expired'} | {'lost', state, token} | {'unknown'}

local now, id, token, ttl = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local it, refused = held(id, token)
if not it then return refused end
if it.deadline <= now then return {'expired'} end
it.deadline = now + ttl
it.updated_at = now
save(id, it)
redis.call('ZADD', K.deadlines, it.deadline, id)
return {'ok', tostring(it.deadline)}
