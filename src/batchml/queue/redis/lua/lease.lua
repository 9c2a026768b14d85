-- lease.lua: return expired leases to ready (or dead), make due retries leasable, then lease the
-- next ready item: highest priority first, FIFO within a priority.
-- KEYS: items, queue, delayed, ready, state:*, deadlines, history
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = worker id
-- ARGV[3] = lease time-to-live (ms)
-- ARGV[4] = request id
-- ARGV[5] = '1' when this request is a retry of one whose reply was lost: if it leased an item
--           that this worker still holds, unexpired, that same lease is returned
-- ARGV[6] = number of history records kept
-- ARGV[7] = how many items to lease at most (lease_many; 1 when absent)
-- Reply: {'none'} or {'ok', each item leased as prelude.lua's view gives it}
-- Cost: O(n log N + expired + due); a retry also reads the (few) leased items.

local now, worker, ttl = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local request, retry, limit = ARGV[4], ARGV[5] == '1', tonumber(ARGV[6])
if retry then
  local earlier = earlier_lease(now, worker, request)
  if earlier then return earlier end
end
return lease_next(now, worker, ttl, request, limit, tonumber(ARGV[7] or '1'))
