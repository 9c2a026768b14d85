-- push.lua: add items in order, all or none. An existing id is left alone ('exists') unless
-- force is set and the item has ended, which puts it back to ready ('reset'). A dependency must
-- already exist or be pushed earlier in the same call.
-- The first push of a queue (and the first after a purge) sets its generation id.
-- KEYS: items, queue, delayed, ready, state:*, order, seq, generation
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = force: '1' or '0'
-- ARGV[3] = default max attempts
-- ARGV[4..#ARGV-1] = five per item: id, payload JSON, priority, max attempts ('' = default),
--             JSON list of the ids it depends on (no duplicates)
-- ARGV[#ARGV] = a new generation id, kept only if the queue has none
-- Reply: {'ok', outcome per item ('added' | 'exists' | 'reset')} | {'missing', id, dependency}

local now, force, default_max = clock_ms(ARGV[1]), ARGV[2] == '1', tonumber(ARGV[3])
local count = (#ARGV - 4) / 5

-- validate everything before the first write: a script error would not roll back
local seen = {}
for i = 0, count - 1 do
  local id = ARGV[4 + i * 5]
  if not seen[id] and redis.call('HEXISTS', K.items, id) == 0 then
    for _, dep in ipairs(cjson.decode(ARGV[8 + i * 5])) do
      if not seen[dep] and redis.call('HEXISTS', K.items, dep) == 0 then
        return {'missing', id, dep}
      end
    end
  end
  seen[id] = true
end

local function add(id, payload, priority, max_attempts, deps_json)
  local pending = 0
  for _, dep in ipairs(cjson.decode(deps_json)) do
    local d = load(dep)
    if not ended(d.state) then pending = pending + 1 end
    local dependents = {}
    if d.dependents then dependents = cjson.decode(d.dependents) end
    dependents[#dependents + 1] = id
    d.dependents = cjson.encode(dependents)
    save(dep, d)
  end
  local seq = redis.call('INCR', K.seq)
  local it = {seq = seq, priority = priority, attempts = 0, max_attempts = max_attempts,
              token = 0, pending = pending, deps = deps_json, payload = payload,
              available_at = now, created_at = now, updated_at = now}
  redis.call('ZADD', K.order, seq, id)
  if pending > 0 then set_state(id, it, 'waiting', now) else make_ready(id, it, now, now) end
  save(id, it)
end

redis.call('SET', K.generation, ARGV[#ARGV], 'NX')
local outcomes = {'ok'}
for i = 0, count - 1 do
  local b = 4 + i * 5
  local id = ARGV[b]
  local it = load(id)
  if not it then
    add(id, ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]) or default_max,
        ARGV[b + 4])
    outcomes[#outcomes + 1] = 'added'
  elseif force and ended(it.state) then
    it.attempts = 0
    it.last_error = nil
    it.committed = nil
    make_ready(id, it, now, now)
    save(id, it)
    outcomes[#outcomes + 1] = 'reset'
  else
    outcomes[#outcomes + 1] = 'exists'
  end
end
return outcomes
