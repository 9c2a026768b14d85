-- items.lua (read only): items in push order, optionally only those in some states.
-- KEYS: items, order, queue, delayed, deadlines, state:*
-- ARGV[1] = at most this many items (0 = all)
-- ARGV[2..] = states to keep (none = every item)
-- Reply: a list of items, each as prelude.lua's view gives it
-- Cost: O(limit) per state kept in a zset by push sequence (waiting, done, dead, blocked);
-- every ready or leased item is read to be sorted.

local limit = tonumber(ARGV[1])
local stop = -1
if limit > 0 then stop = limit - 1 end

-- {push sequence, id} of the items in `state` (at most `stop` + 1 of a state:* zset)
local function members(state, into)
  if INDEXED[state] then
    local flat = redis.call('ZRANGE', K.state[state], 0, stop, 'WITHSCORES')
    for j = 1, #flat, 2 do into[#into + 1] = {tonumber(flat[j + 1]), flat[j]} end
    return
  end
  local ids = {}
  if state == 'ready' then
    for _, member in ipairs(redis.call('ZRANGE', K.queue, 0, -1)) do
      into[#into + 1] = {tonumber(string.sub(member, 1, 16)), string.sub(member, 17)}
    end
    ids = redis.call('ZRANGE', K.delayed, 0, -1)
  elseif state == 'leased' then
    ids = redis.call('ZRANGE', K.deadlines, 0, -1)
  end
  for _, id in ipairs(ids) do into[#into + 1] = {load(id).seq, id} end
end

local ids = {}
if #ARGV < 2 then
  ids = redis.call('ZRANGE', K.order, 0, stop)
else
  local scored = {}
  for i = 2, #ARGV do members(ARGV[i], scored) end
  table.sort(scored, function(a, b) return a[1] < b[1] end)
  for j = 1, #scored do
    if limit > 0 and j > limit then break end
    ids[j] = scored[j][2]
  end
end
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = view(id, load(id))
end
return out
