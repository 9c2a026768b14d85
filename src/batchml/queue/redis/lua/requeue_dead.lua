-- requeue_dead.lua: put dead items (all, or the ids given) back with fresh attempts, in push
-- order, and resolve the items they blocked again (back to waiting, or ready).
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
  local seqs = {}
  for i = 3, #ARGV do
    local it = load(ARGV[i])
    if it and not seqs[ARGV[i]] then
      seqs[ARGV[i]] = it.seq
      ids[#ids + 1] = ARGV[i]
    end
  end
  table.sort(ids, function(a, b) return seqs[a] < seqs[b] end)
end
local n = 0
for _, id in ipairs(ids) do
  local it = load(id)
  if it and it.state == 'dead' then
    it.attempts = 0
    resolve(id, it, now)
    settle_dependents(it, now)
    n = n + 1
  end
end
return {'ok', n}
