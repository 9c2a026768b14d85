-- complete.lua: commit an item leased under the current fencing token and, if a lineage step is
-- given, advance the run's lineage head by compare-and-set - both or neither.
-- KEYS: items, queue, delayed, ready, state:*, results, dependents, deadlines, history,
--       lineage-head, lineage
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = item id
-- ARGV[3] = fencing token
-- ARGV[4] = {"result", "outputs"} JSON to keep
-- ARGV[5] = number of history records kept
-- ARGV[6..9] (only with a lineage step) = run, expected head version, lineage field of the new
--             version ("<run>#<version>"), new head JSON
-- Reply: {'ok'} | {'lost', state, token} | {'unknown'} | {'conflict', current head version}

local now, id, token = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local limit = tonumber(ARGV[5])
local it, refused = held(id, token)
if not it then return refused end

if ARGV[6] then
  local run, expected = ARGV[6], tonumber(ARGV[7])
  local raw = redis.call('HGET', K.lineage_head, run)
  local current = 0
  if raw then current = tonumber(cjson.decode(raw).version) end
  if current ~= expected then return {'conflict', tostring(current)} end
  redis.call('HSET', K.lineage, ARGV[8], ARGV[9])
  redis.call('HSET', K.lineage_head, run, ARGV[9])
end

redis.call('HSET', K.results, id, ARGV[4])
log_attempt(id, it, now, 'done', nil, limit)
unlease(id, it)
it.last_error = nil
set_state(id, it, 'done', now)
save(id, it)
end_item(id, now)
return {'ok'}
