#!lua flags=allow-oom
-- Give back the concurrency slots of runs that ended, and fold their run time into the
-- route's mean (which spaces the jobs waiting for a slot: see limit_take.lua).
-- KEYS[1] the route's state hash, KEYS[2] its lease set, KEYS[3..] the lease set of each key value named
-- ARGV[1] the released runs' total run time ms, ARGV[2] how many runs, then per run: the index of
-- its key value's lease set among KEYS[3..] (0: none) and its lease member ("worker|job")
-- Returns: the number of leases removed from the route's set.
-- Invariant: a lease leaves every set it is in, in one step.
-- allow-oom: the slots must come back when Redis is full; the removals free memory, and the
-- mean is one small field.
local removed = 0
for i = 3, #ARGV, 2 do
  local ki = tonumber(ARGV[i])
  removed = removed + redis.call('ZREM', KEYS[2], ARGV[i + 1])
  if ki > 0 then redis.call('ZREM', KEYS[2 + ki], ARGV[i + 1]) end
end
local count = tonumber(ARGV[2])
if count > 0 then
  local mean = tonumber(ARGV[1]) / count
  local old = tonumber(redis.call('HGET', KEYS[1], 'ewma'))
  redis.call('HSET', KEYS[1], 'ewma', old and (0.8 * old + 0.2 * mean) or mean)
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], 3600000) end
end
return removed
