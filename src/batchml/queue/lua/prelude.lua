-- prelude.lua: shared helpers, prepended to every other script of this folder when it is loaded
-- (batchml.queue.redis). Every script receives every key of its queue, in this order
-- (batchml.queue.keys.PARTS), and never builds a key name itself:
--   KEYS[1]  items           hash  id -> item record (JSON encoded by these scripts)
--   KEYS[2]  payloads        hash  id -> payload JSON (opaque here)
--   KEYS[3]  results         hash  id -> {"result", "outputs"} JSON of the commit (opaque here)
--   KEYS[4]  dependents      hash  id -> JSON list of the ids that depend on it
--   KEYS[5]  order           zset  id scored by push sequence
--   KEYS[6]  seq             string push sequence counter
--   KEYS[7]  queue           zset  ready now: member string.format('%016d', seq) .. id,
--                                  score -priority (highest priority first, then FIFO)
--   KEYS[8]  delayed         zset  ready after a backoff: id scored by available_at (ms)
--   KEYS[9]  deadlines       zset  leased: id scored by lease deadline (ms)
--   KEYS[10..14] state:waiting|ready|leased|done|dead  zsets: id scored by push sequence
--   KEYS[15] ready           list  one placeholder per ready item (KEDA reads its LLEN)
--   KEYS[16] lineage-head    hash  run -> head JSON of the run's latest version
--   KEYS[17] lineage         hash  "<run>#<version>" -> head JSON
--   KEYS[18] history         list  ended attempts (JSON), newest last
--   KEYS[19] workers         hash  worker id -> its last report (JSON)
--   KEYS[20] workers-seen    zset  worker id scored by when its report arrived (ms)
--   KEYS[21] lease-requests  hash  worker -> {"request", "id", "token"} of its last lease
-- Item record fields: state, seq, priority, attempts, max_attempts, token, worker, leased_at,
-- deadline, available_at (ms), pending (dependencies not ended), deps (JSON text of the ids),
-- last_error, created_at, updated_at (ms). Times are integer milliseconds.

local K = {
  items = KEYS[1], payloads = KEYS[2], results = KEYS[3], dependents = KEYS[4],
  order = KEYS[5], seq = KEYS[6], queue = KEYS[7], delayed = KEYS[8], deadlines = KEYS[9],
  state = {waiting = KEYS[10], ready = KEYS[11], leased = KEYS[12], done = KEYS[13],
           dead = KEYS[14]},
  ready = KEYS[15], lineage_head = KEYS[16], lineage = KEYS[17], history = KEYS[18],
  workers = KEYS[19], workers_seen = KEYS[20], lease_requests = KEYS[21],
}

-- "now" in ms: the caller's clock when given (tests move a fake one), else the server's, so
-- workers on machines with skewed clocks agree on every deadline.
local function clock_ms(arg)
  if arg == nil or arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return tonumber(arg)
end

local function load(id)
  local raw = redis.call('HGET', K.items, id)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function save(id, it)
  local raw = cjson.encode(it)
  redis.call('HSET', K.items, id, raw)
  return raw
end

local function ended(state)
  return state == 'done' or state == 'dead'
end

local function ready_member(id, it)
  return string.format('%016d', it.seq) .. id
end

local function set_state(id, it, state, now)
  if it.state then redis.call('ZREM', K.state[it.state], id) end
  redis.call('ZADD', K.state[state], it.seq, id)
  it.state = state
  it.updated_at = now
end

-- Ready at `available` (ms): leasable at once, or after a backoff through the delayed zset.
local function make_ready(id, it, now, available)
  set_state(id, it, 'ready', now)
  it.available_at = available
  if available > now then
    redis.call('ZADD', K.delayed, available, id)
  else
    redis.call('ZADD', K.queue, 0 - it.priority, ready_member(id, it))
  end
end

local function log_attempt(id, it, now, outcome, err, limit)
  redis.call('RPUSH', K.history, cjson.encode({
    item_id = id, token = it.token, worker = it.worker or '', started_at = it.leased_at or now,
    ended_at = now, outcome = outcome, error = err}))
  redis.call('LTRIM', K.history, -limit, -1)
end

-- The lease of `it` ends (committed, failed, released or expired).
local function unlease(id, it)
  redis.call('ZREM', K.deadlines, id)
  if it.worker then
    local raw = redis.call('HGET', K.lease_requests, it.worker)
    if raw and cjson.decode(raw).id == id then redis.call('HDEL', K.lease_requests, it.worker) end
  end
  it.worker = nil
  it.deadline = nil
  it.leased_at = nil
end

-- `id` reached done or dead: dependents whose last dependency it was become ready.
local function end_item(id, now)
  local raw = redis.call('HGET', K.dependents, id)
  if not raw then return end
  for _, dep_id in ipairs(cjson.decode(raw)) do
    local d = load(dep_id)
    if d and d.state == 'waiting' then
      d.pending = d.pending - 1
      if d.pending <= 0 then make_ready(dep_id, d, now, now) end
      save(dep_id, d)
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

-- Keep LLEN(ready) equal to the number of ready items.
local function sync_ready_list()
  local want = redis.call('ZCARD', K.state.ready)
  local have = redis.call('LLEN', K.ready)
  if want == 0 then
    if have > 0 then redis.call('DEL', K.ready) end
  elseif want < have then
    redis.call('LTRIM', K.ready, 0, want - 1)
  else
    local missing = want - have
    while missing > 0 do
      local n = math.min(missing, 1000)
      local marks = {}
      for i = 1, n do marks[i] = '1' end
      redis.call('RPUSH', K.ready, unpack(marks))
      missing = missing - n
    end
  end
end
