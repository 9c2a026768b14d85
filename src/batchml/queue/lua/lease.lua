-- lease.lua: return expired leases to ready (or dead), make due retries leasable, then lease the
-- next ready item: highest priority first, FIFO within a priority.
-- KEYS: items, queue, delayed, ready, state:*, payloads, dependents, deadlines, history
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = worker id
-- ARGV[3] = lease time-to-live (ms)
-- ARGV[4] = request id
-- ARGV[5] = '1' when this request is a retry of one whose reply was lost: if it leased an item
--           that this worker still holds, unexpired, that same lease is returned
-- ARGV[6] = number of history records kept
-- Reply: {'none'} or {'ok', id, item record JSON, payload JSON}
-- Cost: O(log n + expired + due); a retry also reads the (few) leased items.

local now, worker, ttl = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local request, retry, limit = ARGV[4], ARGV[5] == '1', tonumber(ARGV[6])

if retry then
  for _, id in ipairs(redis.call('ZRANGE', K.deadlines, 0, -1)) do
    local raw = redis.call('HGET', K.items, id)
    local it = cjson.decode(raw)
    if it.worker == worker and it.request == request and it.deadline > now then
      return {'ok', id, raw, redis.call('HGET', K.payloads, id)}
    end
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', now)) do
  local it = load(id)
  local err = 'lease expired: worker ' .. it.worker .. ' stopped renewing it (attempt '
    .. it.attempts .. ')'
  log_attempt(id, it, now, 'expired', err, limit)
  unlease(id, it)
  if it.attempts >= it.max_attempts then
    it.last_error = err .. '; gave up after ' .. it.attempts .. ' attempts'
    set_state(id, it, 'dead', now)
    save(id, it)
    end_item(id, now)
  else
    it.last_error = err
    make_ready(id, it, now, now)
    save(id, it)
  end
end

local due = redis.call('ZRANGEBYSCORE', K.delayed, '-inf', now)
for _, id in ipairs(due) do
  local it = load(id)
  redis.call('ZADD', K.queue, 0 - it.priority, ready_member(id, it))
end
if #due > 0 then redis.call('ZREMRANGEBYSCORE', K.delayed, '-inf', now) end

local top = redis.call('ZPOPMIN', K.queue)
if #top == 0 then return {'none'} end
local id = string.sub(top[1], 17)
local it = load(id)
set_state(id, it, 'leased', now)
it.token = it.token + 1
it.attempts = it.attempts + 1
it.worker = worker
it.request = request
it.leased_at = now
it.deadline = now + ttl
local raw = save(id, it)
redis.call('ZADD', K.deadlines, it.deadline, id)
return {'ok', id, raw, redis.call('HGET', K.payloads, id)}
