-- complete_and_lease.lua: a worker's steady state in one round trip - commit an item as
-- complete.lua does and, only if that succeeded, lease the next ready item as lease.lua does.
-- KEYS: items, queue, delayed, ready, state:*, deadlines, history, lineage-head, lineage
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = item id
-- ARGV[3] = fencing token
-- ARGV[4] = {"result", "outputs"} JSON to keep ('' when there is neither)
-- ARGV[5] = number of history records kept
-- ARGV[6] = worker id (who leases the next item)
-- ARGV[7] = lease time-to-live (ms)
-- ARGV[8] = request id
-- ARGV[9] = '1' when this request is a retry of one whose reply was lost: if it leased an item
--           that this worker still holds, unexpired, the commit landed with it and that same
--           lease is returned
-- ARGV[10..13] (only with a lineage step) = run, expected head version, lineage field of the
--              new version ("<run>#<version>"), new head JSON
-- Reply: {'ok', the next item as prelude.lua's view gives it} (committed, next item leased) |
--        {'none'} (committed, nothing ready) | {'lost', state, token} | {'unknown'} |
--        {'conflict', current head version} (refused: nothing committed, nothing leased)

local now, id, token = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local limit, worker, ttl, request = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), ARGV[8]
if ARGV[9] == '1' then
  local earlier = earlier_lease(now, worker, request)
  if earlier then return earlier end
end
local refused = complete_item(now, id, token, ARGV[4], limit, lineage_step(10))
if refused then return refused end
return lease_next(now, worker, ttl, request, limit)
