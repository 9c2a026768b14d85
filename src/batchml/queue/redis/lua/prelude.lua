-- prelude.lua: shared helpers, prepended to every other script of this folder when it is loaded
-- (batchml.queue.redis.scripts: once, in the function library, or before each script for
-- EVALSHA). A script receives the keys it uses as KEYS, in the order of
-- batchml.queue.redis.keys.SCRIPT_KEYS, each named batchml:{QUEUE}:<part>; it never builds a key name.
-- The loader binds them by part before each call: `K = {items = KEYS[1], ..., state = {done =
-- KEYS[6], ...}}`, so K.items, K.state.done, K.lineage_head... (and ARGV, in a function, to
-- its arguments).
--   items           hash  id -> item record (MessagePack, read and written only by these
--                         scripts: decoding and encoding it costs a third of JSON's)
--   order           zset  id scored by push sequence
--   seq             string push sequence counter
--   queue           zset  ready now: member string.format('%016d', seq) .. id,
--                         score -priority (highest priority first, then FIFO)
--   delayed         zset  ready after a backoff: id scored by available_at (ms)
--   deadlines       zset  leased: id scored by lease deadline (ms)
--   state:waiting|done|dead|blocked  zsets: id scored by push sequence
--   ready           list  one placeholder per ready item (KEDA reads its LLEN)
--   lineage-head    hash  run -> head JSON of the run's latest version
--   lineage         hash  "<run>#<version>" -> head JSON
--   history         list  ended attempts (JSON), newest last
--   workers         hash  worker id -> its last report (JSON)
--   workers-seen    zset  worker id scored by when its report arrived (ms)
--   generation      string the queue's generation id: set (NX) by push, deleted by a purge
-- Each state has one index, so a state change touches as few keys as it can: waiting, done,
-- dead and blocked are the zsets state:*; ready is queue or delayed, and one element of the KEDA list
-- ready; leased is deadlines.
-- Item record fields: state, seq, priority, attempts, max_attempts, token, worker, request (the
-- lease request id), leased_at, deadline, available_at (ms), pending (dependencies not done),
-- deps and dependents (JSON text of the ids it depends on, of those that depend on it; the
-- latter only when there are some), payload (JSON text, as pushed), committed ({"result",
-- "outputs"} JSON text of the commit, when it kept either), last_error, created_at, updated_at.
-- Times are integer ms.
-- Scripts hand an item to the client as one JSON array (see view).

-- "now" in ms: the caller's clock when given (tests move a fake one), else the server's, so
-- workers on machines with skewed clocks agree on every deadline.
local function clock_ms(arg)
  if arg == nil or arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return tonumber(arg)
end

-- Item records are read through a cache and written back once, when the script ends (flush,
-- which the loader calls after the script's body): an item saved twice is packed and written
-- once, and one HSET writes every changed record. load(id) always sees the script's own saves.
local cache, dirty = {}, {}

local function load(id)
  local it = cache[id]
  if it then return it end
  local raw = redis.call('HGET', K.items, id)
  if not raw then return nil end
  it = cmsgpack.unpack(raw)
  cache[id] = it
  return it
end

-- Read the records of `ids` into the cache with one HMGET (a batch reads its items at once).
local function preload(ids)
  local wanted = {}
  for _, id in ipairs(ids) do
    if not cache[id] then wanted[#wanted + 1] = id end
  end
  if #wanted == 0 then return end
  local raws = redis.call('HMGET', K.items, unpack(wanted))
  for i, id in ipairs(wanted) do
    if raws[i] then cache[id] = cmsgpack.unpack(raws[i]) end
  end
end

local function save(id, it)
  if not dirty[id] then dirty[#dirty + 1] = id end
  dirty[id] = true
  cache[id] = it
end

-- Whether the queue holds `id`, saved by this script or before it.
local function exists(id)
  return cache[id] ~= nil or redis.call('HEXISTS', K.items, id) == 1
end

-- ended attempts recorded by this script (JSON), appended to the history by flush
local history, history_limit = {}, 0

-- the history list is trimmed back to its limit once it holds this many records more
local TRIM_EVERY = 100

-- A call starts with nothing cached, saved or recorded: loaded as a function library
-- (batchml.queue.redis.scripts), these helpers and their state outlive one call.
local function begin()
  cache, dirty, history, history_limit = {}, {}, {}, 0
end

-- Lua's unpack takes a few thousand values at most: long writes go in chunks.
local CHUNK = 1000

local function flush()
  local args = {}
  for _, id in ipairs(dirty) do
    args[#args + 1] = id
    args[#args + 1] = cmsgpack.pack(cache[id])
    if #args >= CHUNK then
      redis.call('HSET', K.items, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('HSET', K.items, unpack(args)) end
  local n = 0
  for first = 1, #history, CHUNK do
    n = redis.call('RPUSH', K.history, unpack(history, first, math.min(first + CHUNK - 1, #history)))
  end
  if n > history_limit + TRIM_EVERY then redis.call('LTRIM', K.history, -history_limit, -1) end
end

-- A JSON string, or null
local function json_text(s)
  if s then return cjson.encode(s) end
  return 'null'
end

-- An item as the client reads it: one JSON array, whose order batchml.queue.redis.queue._item
-- follows - id, state, attempts, max_attempts, priority, token, worker, deadline, available_at,
-- last_error, created_at, updated_at, then three JSON texts put in as they are: deps, payload,
-- committed (null when none). One string costs the client much less to read than a list, and
-- formatting it costs the script about half of what encoding a table does.
local function view(id, it)
  local deadline = 'null'
  if it.deadline then deadline = string.format('%d', it.deadline) end
  return string.format('[%s,"%s",%d,%d,%d,%d,%s,%s,%d,%s,%d,%d,%s,%s,%s]', cjson.encode(id),
    it.state, it.attempts, it.max_attempts, it.priority, it.token, json_text(it.worker),
    deadline, it.available_at, json_text(it.last_error), it.created_at, it.updated_at, it.deps,
    it.payload, it.committed or 'null')
end

local function ended(state)
  return state == 'done' or state == 'dead'
end

local function ready_member(id, it)
  return string.format('%016d', it.seq) .. id
end

-- the states indexed by a zset of their own (state:*); see make_ready and lease_next for ready,
-- unlease and lease_next for leased
local INDEXED = {waiting = true, done = true, dead = true, blocked = true}

-- Move `it` to `state`, keeping the state:* zsets.
local function set_state(id, it, state, now)
  if INDEXED[it.state] then redis.call('ZREM', K.state[it.state], id) end
  if INDEXED[state] then redis.call('ZADD', K.state[state], it.seq, id) end
  it.state = state
  it.updated_at = now
end

-- `it` (not ready yet) becomes ready at `available` (ms): leasable at once, or after a backoff
-- through the delayed zset. The KEDA list grows by one.
local function make_ready(id, it, now, available)
  set_state(id, it, 'ready', now)
  it.available_at = available
  redis.call('RPUSH', K.ready, '1')
  if available > now then
    redis.call('ZADD', K.delayed, available, id)
  else
    redis.call('ZADD', K.queue, 0 - it.priority, ready_member(id, it))
  end
end

-- One ended attempt, kept as JSON for the history (formatted, not cjson-encoded from a table:
-- half the cost; the strings are encoded one by one). flush appends it.
local function log_attempt(id, it, now, outcome, err, limit)
  history[#history + 1] = string.format(
    '{"item_id":%s,"token":%d,"worker":%s,"started_at":%d,"ended_at":%d,"outcome":"%s",'
    .. '"error":%s}', cjson.encode(id), it.token, cjson.encode(it.worker or ''),
    it.leased_at or now, now, outcome, json_text(err))
  history_limit = limit
end

-- The lease of `it` ends (committed, failed, released or expired).
local function unlease(id, it)
  redis.call('ZREM', K.deadlines, id)
  it.worker = nil
  it.request = nil
  it.deadline = nil
  it.leased_at = nil
end

-- `it` is done: dependents whose last pending dependency it was become ready. (A dead item
-- blocks its dependents instead: mark_dead.)
local function end_item(it, now)
  if not it.dependents then return end
  for _, dep_id in ipairs(cjson.decode(it.dependents)) do
    local d = load(dep_id)
    if d and d.state == 'waiting' then
      d.pending = d.pending - 1
      if d.pending <= 0 then make_ready(dep_id, d, now, now) end
      save(dep_id, d)
    end
  end
end

-- Strict dependencies: an item is ready only when every dependency is done. A dead item blocks
-- what (transitively) depends on it; requeueing it, or a forced push, resolves them again.

-- the states an item's dependencies decide (a leased, done or dead item keeps its own)
local SETTLED_BY_DEPS = {waiting = true, ready = true, blocked = true}

-- `it` leaves ready for another state: out of queue or delayed, and the KEDA list shrinks.
local function unready(id, it)
  if it.state ~= 'ready' then return end
  redis.call('ZREM', K.queue, ready_member(id, it))
  redis.call('ZREM', K.delayed, id)
  redis.call('LPOP', K.ready)
end

local function dependents_of(it)
  if not it.dependents then return {} end
  return cjson.decode(it.dependents)
end

-- What blocks an item that depends on `d` (dead or blocked): a blocked one passes its own on.
local function blocked_reason(dep_id, d)
  if d.state == 'blocked' and d.last_error then return d.last_error end
  return 'blocked: dependency ' .. dep_id .. ' is dead: ' .. (d.last_error or 'no error recorded')
end

-- Every waiting or ready item downstream of `it` becomes blocked by `reason`.
local function block_dependents(it, reason, now)
  local frontier = {it}
  while #frontier > 0 do
    for _, dep_id in ipairs(dependents_of(table.remove(frontier))) do
      local d = load(dep_id)
      if d and (d.state == 'waiting' or d.state == 'ready') then
        unready(dep_id, d)
        set_state(dep_id, d, 'blocked', now)
        d.last_error = reason
        save(dep_id, d)
        frontier[#frontier + 1] = d
      end
    end
  end
end

-- The one way an item becomes dead (its lease already ended, it.last_error set): saved dead,
-- and every item that (transitively) needs it blocked.
local function mark_dead(id, it, now)
  set_state(id, it, 'dead', now)
  save(id, it)
  block_dependents(it, blocked_reason(id, it), now)
end

-- Set the state of `it` (not leased) from its dependencies': blocked when one is dead or
-- blocked, else waiting (pending = how many are not done) or ready. Saves it; returns the state.
local function resolve(id, it, now)
  local old, pending, reason = it.state, 0, nil
  for _, dep in ipairs(cjson.decode(it.deps)) do
    local d = load(dep)
    if d.state == 'dead' or d.state == 'blocked' then
      reason = reason or blocked_reason(dep, d)
    elseif d.state ~= 'done' then
      pending = pending + 1
    end
  end
  it.pending = pending
  if reason then
    if old ~= 'blocked' or it.last_error ~= reason then
      unready(id, it)
      set_state(id, it, 'blocked', now)
      it.last_error = reason
    end
  else
    if old == 'blocked' then it.last_error = nil end  -- it was the reason
    if pending > 0 and old ~= 'waiting' then
      unready(id, it)
      set_state(id, it, 'waiting', now)
    elseif pending == 0 and old ~= 'ready' then
      make_ready(id, it, now, now)
    end
  end
  save(id, it)
  return it.state
end

-- Resolve the items downstream of `it` again, as far as their states change.
local function settle_dependents(it, now)
  local frontier = {it}
  while #frontier > 0 do
    for _, dep_id in ipairs(dependents_of(table.remove(frontier))) do
      local d = load(dep_id)
      if d and SETTLED_BY_DEPS[d.state] then
        local before = d.state
        if resolve(dep_id, d, now) ~= before then frontier[#frontier + 1] = d end
      end
    end
  end
end

-- The item leased under `token`, or nil and the reply that says why not.
local function held(id, token)
  local it = load(id)
  if not it then return nil, {'unknown'} end
  if it.state ~= 'leased' or it.token ~= token then
    return nil, {'lost', it.state, tostring(it.token)}
  end
  return it
end

-- Whether `id`, leased under `token`, may be committed with the lineage `step` (nil or see
-- lineage_step): the item, or nil and the refusal {'lost', state, token} | {'unknown'} |
-- {'conflict', current head version}. Checks only. `heads` (run -> version) holds the heads
-- that commits checked before this one in the same script will have moved; `seen` their ids
-- (an id committed twice in one script is refused the second time, as a stale token).
local function commit_check(id, token, step, heads, seen)
  local it, refused = held(id, token)
  if not it then return nil, refused end
  if seen[id] then return nil, {'lost', 'done', tostring(token)} end
  seen[id] = true
  if step then
    local current = heads[step.run]
    if current == nil then
      local raw = redis.call('HGET', K.lineage_head, step.run)
      current = 0
      if raw then current = tonumber(cjson.decode(raw).version) end
    end
    if current ~= step.expected then return nil, {'conflict', tostring(current)} end
    heads[step.run] = step.expected + 1
  end
  return it
end

-- Commit `it` (checked by commit_check): keep `committed` (its result and outputs, JSON; ''
-- when there is neither) and advance the run's head by the lineage `step`, if any.
local function commit_apply(now, id, it, committed, limit, step)
  if step then
    redis.call('HSET', K.lineage, step.field, step.head)
    redis.call('HSET', K.lineage_head, step.run, step.head)
  end
  if committed ~= '' then it.committed = committed end
  log_attempt(id, it, now, 'done', nil, limit)
  unlease(id, it)
  it.last_error = nil
  set_state(id, it, 'done', now)
  save(id, it)
  end_item(it, now)
end

-- Commit `id`, leased under `token`, with its lineage `step` (see lineage_step), if any: both
-- or neither. Returns nil once done, or the refusal (commit_check).
local function complete_item(now, id, token, committed, limit, step)
  local it, refused = commit_check(id, token, step, {}, {})
  if not it then return refused end
  commit_apply(now, id, it, committed, limit, step)
  return nil
end

-- The lineage step given as ARGV[first..first+3] (run, expected head version, lineage field of
-- the new version, new head JSON), or nil when the caller gave none.
local function lineage_step(first)
  if not ARGV[first] then return nil end
  return {run = ARGV[first], expected = tonumber(ARGV[first + 1]), field = ARGV[first + 2],
          head = ARGV[first + 3]}
end

-- The leases an earlier request of `worker` with this id made, if this worker still holds
-- them unexpired (its reply was lost): {'ok', view of each item}, or nil.
local function earlier_lease(now, worker, request)
  local found = {'ok'}
  for _, id in ipairs(redis.call('ZRANGE', K.deadlines, 0, -1)) do
    local it = load(id)
    if it.worker == worker and it.request == request and it.deadline > now then
      found[#found + 1] = view(id, it)
    end
  end
  if #found > 1 then return found end
  return nil
end

-- Expired leases go back to ready (or dead after their last attempt).
local function reclaim_expired(now, limit)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', now)) do
    local it = load(id)
    local err = 'lease expired: worker ' .. it.worker .. ' stopped renewing it (attempt '
      .. it.attempts .. ')'
    log_attempt(id, it, now, 'expired', err, limit)
    unlease(id, it)
    if it.attempts >= it.max_attempts then
      it.last_error = err .. '; gave up after ' .. it.attempts .. ' attempts'
      mark_dead(id, it, now)
    else
      it.last_error = err
      make_ready(id, it, now, now)
      save(id, it)
    end
  end
end

-- Reclaim expired leases, make due retries leasable, then lease up to `n` ready items to
-- `worker` (highest priority first, FIFO within a priority), each under a new fencing token.
-- Returns {'ok', view of each item} or {'none'}. Cost: O(n log n + expired + due).
local function lease_next(now, worker, ttl, request, limit, n)
  reclaim_expired(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K.delayed, '-inf', now)
  for _, id in ipairs(due) do
    local it = load(id)
    redis.call('ZADD', K.queue, 0 - it.priority, ready_member(id, it))
  end
  if #due > 0 then redis.call('ZREMRANGEBYSCORE', K.delayed, '-inf', now) end

  local top = redis.call('ZPOPMIN', K.queue, n or 1)
  if #top == 0 then return {'none'} end
  local taken = #top / 2
  redis.call('LTRIM', K.ready, taken, -1)  -- the KEDA list shrinks by as many
  local reply, deadline, scored, ids = {'ok'}, now + ttl, {}, {}
  for i = 1, #top, 2 do ids[#ids + 1] = string.sub(top[i], 17) end
  if #ids > 1 then preload(ids) end
  for i = 1, #top, 2 do
    local id = string.sub(top[i], 17)
    local it = load(id)
    set_state(id, it, 'leased', now)
    it.token = it.token + 1
    it.attempts = it.attempts + 1
    it.worker = worker
    it.request = request
    it.leased_at = now
    it.deadline = deadline
    save(id, it)
    scored[#scored + 1] = deadline
    scored[#scored + 1] = id
    reply[#reply + 1] = view(id, it)
  end
  redis.call('ZADD', K.deadlines, unpack(scored))  -- n is a worker's batch: a few hundred at most
  return reply
end
