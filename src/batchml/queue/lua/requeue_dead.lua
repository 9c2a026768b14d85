-- requeue_dead.lua: put dead items (all, or the ids given) back to ready with fresh attempts.
-- KEYS: items, queue, delayed, ready, state:*
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = '1' for every dead item, '0' for the ids that follow
-- ARGV[3..] = item ids
-- Reply: {'ok', number of items requeued}

local now = clock_ms(ARGV[1])
local ids = {}
if ARGV[2] == '1' then
  ids = redis.call('ZRANGE', K.state.dead, 0, -1)
else
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local n = 0
for _, id in ipairs(ids) do
  local it = load(id)
  if it and it.state == 'dead' then
    it.attempts = 0
    make_ready(id, it, now, now)
    save(id, it)
    n = n + 1
  end
end
return {'ok', n}
