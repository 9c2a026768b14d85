-- reset_lineage.lua: move a run's lineage head back to an earlier version and re-arm items, all
-- or nothing (the recovery path for a lost or corrupt checkpoint). Versions above the target
-- leave the lineage; each re-armed item gets fresh attempts, loses its last error and commit,
-- and is ready when every dependency is done, blocked behind a dead one, else waiting; the items
-- downstream of it are resolved again the same way.
-- Refused, with nothing changed, when the head is not the version the caller read, the target
-- version is not in the lineage, an id is unknown, an item of the run (payload "run") or of the
-- list is leased, or an item outside the list that is ready or leased depends on one of it.
-- KEYS: items, queue, delayed, ready, state:*, deadlines, lineage-head, lineage
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = run
-- ARGV[3] = target version (0 = untrained)
-- ARGV[4] = the head version the caller read (compare-and-set)
-- ARGV[5] = lineage field of the target version ("<run>#<version>"; '' for version 0)
-- ARGV[6] = n, the number of lineage fields that follow, to delete (the versions above)
-- ARGV[7..6+n] = those fields
-- ARGV[7+n..] = ids of the items to re-arm, dependencies first
-- Reply: {'ok'} | {'conflict', current head version} | {'no-version'} | {'unknown', id} |
--        {'leased', id} | {'dependent', id, the re-armed id it depends on}

local now, run, target = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local expected, target_field, n_drop = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local rearm, wanted = {}, {}
for i = 7 + n_drop, #ARGV do
  rearm[#rearm + 1] = ARGV[i]
  wanted[ARGV[i]] = true
end

-- validate everything before the first write: a script error would not roll back
local raw = redis.call('HGET', K.lineage_head, run)
local current = 0
if raw then current = tonumber(cjson.decode(raw).version) end
if current ~= expected then return {'conflict', tostring(current)} end
local head = false
if target > 0 then
  head = redis.call('HGET', K.lineage, target_field)
  if not head then return {'no-version'} end
end
for _, id in ipairs(rearm) do
  if redis.call('HEXISTS', K.items, id) == 0 then return {'unknown', id} end
end
for _, id in ipairs(redis.call('ZRANGE', K.deadlines, 0, -1)) do
  local ok, payload = pcall(cjson.decode, load(id).payload)
  if wanted[id] or (ok and type(payload) == 'table' and payload.run == run) then
    return {'leased', id}
  end
end
for _, id in ipairs(rearm) do
  local it = load(id)
  if ended(it.state) and it.dependents then
    for _, dep_id in ipairs(cjson.decode(it.dependents)) do
      local d = load(dep_id)
      if not wanted[dep_id] and d and (d.state == 'ready' or d.state == 'leased') then
        return {'dependent', dep_id, id}
      end
    end
  end
end

for i = 1, n_drop do redis.call('HDEL', K.lineage, ARGV[6 + i]) end
if head then
  redis.call('HSET', K.lineage_head, run, head)
else
  redis.call('HDEL', K.lineage_head, run)
end

-- first every re-armed item leaves its state (waiting, for now), then each is resolved from its
-- dependencies (ready only when all are done, blocked behind a dead one), and so are the items
-- downstream of it: the result does not depend on the order of the list
for _, id in ipairs(rearm) do
  local it = load(id)
  unready(id, it)
  set_state(id, it, 'waiting', now)
  it.attempts = 0
  it.last_error = nil
  it.committed = nil
  save(id, it)
end
for _, id in ipairs(rearm) do resolve(id, load(id), now) end
for _, id in ipairs(rearm) do settle_dependents(load(id), now) end
return {'ok'}
