-- push.lua: add items in order, all or none. An item is ready at once only when every
-- dependency is done (blocked when one is dead or blocked, else waiting). An existing id is
-- left alone ('exists') unless force is set and the item is not leased: then it is reset
-- ('reset') - the new payload and dependencies, fresh attempts, no commit - and its state and
-- its dependents' are resolved again. A dependency must already exist or be pushed earlier in
-- the same call, and a reset may not close a dependency cycle.
-- The first push of a queue (and the first after a purge) sets its generation id.
-- KEYS: items, queue, delayed, ready, state:*, order, seq, generation
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = force: '1' or '0'
-- ARGV[3] = default max attempts
-- ARGV[4..#ARGV-1] = five per item: id, payload JSON, priority, max attempts ('' = default),
--             JSON list of the ids it depends on (no duplicates)
-- ARGV[#ARGV] = a new generation id, kept only if the queue has none
-- Reply: {'ok', outcome per item ('added' | 'exists' | 'reset')} | {'missing', id, dependency}
--        | {'cycle', id, dependency}
-- Cost: O(items + dependencies); a reset also walks the items upstream of its dependencies.

local now, force, default_max = clock_ms(ARGV[1]), ARGV[2] == '1', tonumber(ARGV[3])
local count = (#ARGV - 4) / 5

-- What each item does: 'add', 'reset' or 'exists' (existing items read once).
local function action(it)
  if not it then return 'add' end
  if force and it.state ~= 'leased' then return 'reset' end
  return 'exists'
end

-- validate everything before the first write: a script error would not roll back
local planned = {}  -- id -> dependency list this push gives it (added or reset)
local function deps_of(x)
  if planned[x] then return planned[x] end
  local r = load(x)
  if not r then return {} end
  return cjson.decode(r.deps)
end
local function reaches(from, target)  -- does `from` (transitively) depend on `target`?
  local stack, visited = {from}, {}
  while #stack > 0 do
    local x = table.remove(stack)
    if x == target then return true end
    if not visited[x] then
      visited[x] = true
      for _, y in ipairs(deps_of(x)) do stack[#stack + 1] = y end
    end
  end
  return false
end
local actions = {}
for i = 0, count - 1 do
  local id = ARGV[4 + i * 5]
  local act = 'exists'
  if planned[id] then
    if force then act = 'reset' end
  else
    act = action(load(id))
  end
  actions[i] = act
  if act ~= 'exists' then
    local deps = cjson.decode(ARGV[8 + i * 5])
    for _, dep in ipairs(deps) do
      if not planned[dep] and redis.call('HEXISTS', K.items, dep) == 0 then
        return {'missing', id, dep}
      end
      if act == 'reset' and reaches(dep, id) then return {'cycle', id, dep} end
    end
    planned[id] = deps
  end
end

-- `id` is added to (or, when `old` is given, dropped from) the dependents of each of `deps`.
local function link(id, deps, drop)
  for _, dep in ipairs(deps) do
    local d = load(dep)
    local kept = {}
    for _, other in ipairs(dependents_of(d)) do
      if other ~= id then kept[#kept + 1] = other end
    end
    if not drop then kept[#kept + 1] = id end
    if #kept > 0 then d.dependents = cjson.encode(kept) else d.dependents = nil end
    save(dep, d)
  end
end

local function add(id, payload, priority, max_attempts, deps_json)
  link(id, cjson.decode(deps_json), false)
  local seq = redis.call('INCR', K.seq)
  local it = {seq = seq, priority = priority, attempts = 0, max_attempts = max_attempts,
              token = 0, pending = 0, deps = deps_json, payload = payload,
              available_at = now, created_at = now, updated_at = now}
  redis.call('ZADD', K.order, seq, id)
  set_state(id, it, 'waiting', now)
  resolve(id, it, now)
end

local function reset(id, payload, deps_json)
  local it = load(id)
  link(id, cjson.decode(it.deps), true)
  link(id, cjson.decode(deps_json), false)
  it = load(id)  -- linking may have saved it (a dependency of itself is refused above)
  it.payload, it.deps = payload, deps_json
  it.attempts = 0
  it.last_error = nil
  it.committed = nil
  unready(id, it)
  set_state(id, it, 'waiting', now)
  resolve(id, it, now)
  settle_dependents(it, now)
end

redis.call('SET', K.generation, ARGV[#ARGV], 'NX')
local outcomes = {'ok'}
for i = 0, count - 1 do
  local b = 4 + i * 5
  local id = ARGV[b]
  if actions[i] == 'add' and not exists(id) then
    add(id, ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]) or default_max,
        ARGV[b + 4])
    outcomes[#outcomes + 1] = 'added'
  elseif actions[i] ~= 'exists' then
    reset(id, ARGV[b + 1], ARGV[b + 4])
    outcomes[#outcomes + 1] = 'reset'
  else
    outcomes[#outcomes + 1] = 'exists'
  end
end
return outcomes
