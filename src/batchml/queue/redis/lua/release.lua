-- release.lua: give an item back at once (graceful shutdown); the attempt is not counted.
-- KEYS: items, queue, delayed, ready, state:*, deadlines, history
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = item id
-- ARGV[3] = fencing token
-- ARGV[4] = number of history records kept
-- Reply: {'ok'} | {'lost', state, token} | {'unknown'}

local now, id, token, limit = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local it, refused = held(id, token)
if not it then return refused end
log_attempt(id, it, now, 'released', nil, limit)
unlease(id, it)
it.attempts = it.attempts - 1
make_ready(id, it, now, now)
save(id, it)
return {'ok'}
