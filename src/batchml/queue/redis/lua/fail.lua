-- fail.lua: record a failed attempt of an item leased under the current fencing token: back to
-- ready after a backoff, or dead after its last attempt (its dependents, transitively, then
-- become blocked).
-- KEYS: items, queue, delayed, ready, state:*, deadlines, history
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = item id
-- ARGV[3] = fencing token
-- ARGV[4] = error (one line)
-- ARGV[5] = number of history records kept
-- ARGV[6..8] = backoff base (ms), factor, cap (ms): the delay after attempt n is
--              min(base * factor ^ (n - 1), cap), as RetryPolicy.backoff computes it
-- ARGV[9] = 1 if the error is permanent (retrying cannot help): dead at once, else 0
-- Reply: {'ok', 'ready' | 'dead'} | {'lost', state, token} | {'unknown'}

local now, id, token, err = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local limit = tonumber(ARGV[5])
local base, factor, cap = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local permanent = ARGV[9] == '1'
local it, refused = held(id, token)
if not it then return refused end

it.last_error = err
if permanent or it.attempts >= it.max_attempts then
  log_attempt(id, it, now, 'dead', err, limit)
  unlease(id, it)
  mark_dead(id, it, now)
  return {'ok', 'dead'}
end
log_attempt(id, it, now, 'failed', err, limit)
unlease(id, it)
local delay = math.min(base * factor ^ math.max(it.attempts - 1, 0), cap)
make_ready(id, it, now, now + math.floor(delay + 0.5))
save(id, it)
return {'ok', 'ready'}
