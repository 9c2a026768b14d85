-- complete.lua: commit an item leased under the current fencing token and, if a lineage step is
-- given, advance the run's lineage head by compare-and-set - both or neither.
-- KEYS: items, queue, delayed, ready, state:*, deadlines, history, lineage-head, lineage
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = item id
-- ARGV[3] = fencing token
-- ARGV[4] = {"result", "outputs"} JSON to keep ('' when there is neither)
-- ARGV[5] = number of history records kept
-- ARGV[6..9] (only with a lineage step) = run, expected head version, lineage field of the new
--             version ("<run>#<version>"), new head JSON
-- Reply: {'ok'} | {'lost', state, token} | {'unknown'} | {'conflict', current head version}

local now, id, token = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local refused = complete_item(now, id, token, ARGV[4], tonumber(ARGV[5]), lineage_step(6))
if refused then return refused end
return {'ok'}
