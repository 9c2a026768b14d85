-- report_worker.lua: keep a worker's self-report, stamped with the queue's clock, and drop the
-- reports that arrived longer ago than the retention.
-- KEYS: workers, workers-seen
-- ARGV[1] = now (ms; '' = the server's clock)
-- ARGV[2] = worker id
-- ARGV[3] = report JSON
-- ARGV[4] = retention (ms)
-- Reply: {'ok', now (ms)}

local now, worker, retention = clock_ms(ARGV[1]), ARGV[2], tonumber(ARGV[4])
redis.call('HSET', K.workers, worker, ARGV[3])
redis.call('ZADD', K.workers_seen, now, worker)
local cutoff = '(' .. tostring(now - retention)
local stale = redis.call('ZRANGEBYSCORE', K.workers_seen, '-inf', cutoff)
if #stale > 0 then
  redis.call('HDEL', K.workers, unpack(stale))
  redis.call('ZREMRANGEBYSCORE', K.workers_seen, '-inf', cutoff)
end
return {'ok', tostring(now)}
