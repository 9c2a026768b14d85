-- get.lua (read only): one item.
-- KEYS: items
-- ARGV[1] = item id
-- Reply: {'ok', the item as prelude.lua's view gives it} | {'unknown'}

local id = ARGV[1]
local it = load(id)
if not it then return {'unknown'} end
return {'ok', view(id, it)}
