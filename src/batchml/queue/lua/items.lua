-- items.lua (read only): items in push order, optionally only those in some states.
-- KEYS: items, payloads, results, order, state:*
-- ARGV[1] = at most this many items (0 = all)
-- ARGV[2..] = states to keep (none = every item)
-- Reply: flat list of id, item record JSON, payload JSON, result JSON (or nil), per item

local limit = tonumber(ARGV[1])
local stop = -1
if limit > 0 then stop = limit - 1 end
local ids = {}
if #ARGV < 2 then
  ids = redis.call('ZRANGE', K.order, 0, stop)
else
  local scored = {}
  for i = 2, #ARGV do
    local flat = redis.call('ZRANGE', K.state[ARGV[i]], 0, stop, 'WITHSCORES')
    for j = 1, #flat, 2 do scored[#scored + 1] = {tonumber(flat[j + 1]), flat[j]} end
  end
  table.sort(scored, function(a, b) return a[1] < b[1] end)
  for j = 1, #scored do
    if limit > 0 and j > limit then break end
    ids[j] = scored[j][2]
  end
end
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', K.items, id)
  out[#out + 1] = redis.call('HGET', K.payloads, id)
  out[#out + 1] = redis.call('HGET', K.results, id)
end
return out
