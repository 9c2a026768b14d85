-- lease.lua: return expired leases to ready (or dead), make due retries leasable, then lease the
-- next ready item: highest priority first, FIFO within a priority.
-- KEYS: every key of the queue (prelude.lua). Writes items, queue, delayed, deadlines, state:*,
--       ready, history, lease-requests; reads payloads, dependents.
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = worker id
-- ARGV[3] = lease time-to-live (ms)
-- ARGV[4] = request id: a retry after a lost reply repeats it and gets the same lease back
-- ARGV[5] = number of history records kept
-- Reply: {'none'} or {'ok', id, item record JSON, payload JSON}
-- Cost: O(log n + expired + due).

local now, worker, ttl = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local request, limit = ARGV[4], tonumber(ARGV[5])

local previous = redis.call('HGET', K.lease_requests, worker)
if previous then
  local p = cjson.decode(previous)
  if p.request == request then
    local it = load(p.id)
    if it and it.state == 'leased' and it.token == p.token and it.worker == worker then
      return {'ok', p.id, cjson.encode(it), redis.call('HGET', K.payloads, p.id)}
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

local top = redis.call('ZRANGE', K.queue, 0, 0)
if #top == 0 then
  sync_ready_list()
  return {'none'}
end
redis.call('ZREM', K.queue, top[1])
local id = string.sub(top[1], 17)
local it = load(id)
set_state(id, it, 'leased', now)
it.token = it.token + 1
it.attempts = it.attempts + 1
it.worker = worker
it.leased_at = now
it.deadline = now + ttl
local raw = save(id, it)
redis.call('ZADD', K.deadlines, it.deadline, id)
redis.call('HSET', K.lease_requests, worker,
  cjson.encode({request = request, id = id, token = it.token}))
sync_ready_list()
return {'ok', id, raw, redis.call('HGET', K.payloads, id)}
