-- commit_and_lease.lua: a batch in one round trip - commit several items (each as complete.lua
-- does, all or none) and, only if every commit is accepted, lease up to n ready items as
-- lease.lua does.
-- KEYS: items, queue, delayed, ready, state:*, deadlines, history, lineage-head, lineage
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = number of history records kept
-- ARGV[3] = worker id (who leases the next items)
-- ARGV[4] = lease time-to-live (ms)
-- ARGV[5] = request id
-- ARGV[6] = '1' when this request is a retry of one whose reply was lost: if it leased items
--           that this worker still holds, unexpired, the commits landed with them and those
--           same leases are returned
-- ARGV[7] = how many items to lease at most (0: none)
-- ARGV[8..] = the commits, each: item id, fencing token, {"result", "outputs"} JSON ('' when
--             neither), then '0', or '1' and the lineage step: run, expected head version,
--             lineage field of the new version ("<run>#<version>"), new head JSON
-- Reply: {'ok', each item leased as prelude.lua's view gives it} | {'none'} (committed,
--        nothing leased) | {'refused', i, refusal...}: the i-th commit (1-based) was refused
--        ({'lost', state, token} | {'unknown'} | {'conflict', current head version}), and
--        nothing was committed or leased.
-- Cost: the checks of every commit first (the script cannot undo a write), then the writes.

local now, limit, worker = clock_ms(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local ttl, request, n = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[7])
if ARGV[6] == '1' then
  local earlier = earlier_lease(now, worker, request)
  if earlier then return earlier end
end
local ids, a = {}, 8
while ARGV[a] do
  ids[#ids + 1] = ARGV[a]
  if ARGV[a + 3] == '1' then a = a + 8 else a = a + 4 end
end
if #ids > 1 then preload(ids) end
local commits, heads, seen = {}, {}, {}
a = 8
while ARGV[a] do
  local id, token, committed, step = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], nil
  if ARGV[a + 3] == '1' then step = lineage_step(a + 4) end
  local it, refused = commit_check(id, token, step, heads, seen)
  if not it then
    local reply = {'refused', #commits + 1}
    for _, part in ipairs(refused) do reply[#reply + 1] = part end
    return reply
  end
  commits[#commits + 1] = {id, it, committed, step}
  if step then a = a + 8 else a = a + 4 end
end
-- as commit_apply does for each, with one ZREM of the deadlines and one ZADD of state:done for
-- the whole batch (a leased item is in no state:* index to leave)
local leased, scored = {}, {}
for _, c in ipairs(commits) do
  local id, it, committed, step = c[1], c[2], c[3], c[4]
  if step then
    redis.call('HSET', K.lineage, step.field, step.head)
    redis.call('HSET', K.lineage_head, step.run, step.head)
  end
  if committed ~= '' then it.committed = committed end
  log_attempt(id, it, now, 'done', nil, limit)
  it.worker, it.request, it.deadline, it.leased_at = nil, nil, nil, nil
  it.last_error = nil
  it.state, it.updated_at = 'done', now
  leased[#leased + 1] = id
  scored[#scored + 1] = it.seq
  scored[#scored + 1] = id
  save(id, it)
  end_item(it, now)
end
if #leased > 0 then
  redis.call('ZREM', K.deadlines, unpack(leased))
  redis.call('ZADD', K.state.done, unpack(scored))
end
if n < 1 then return {'none'} end
return lease_next(now, worker, ttl, request, limit, n)
