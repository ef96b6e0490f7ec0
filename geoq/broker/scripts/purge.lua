#!lua flags=allow-oom
-- Remove waiting jobs from a queue: a bounded batch from its ready list and from its scheduled set.
-- KEYS[1] ready list, KEYS[2] scheduled set, KEYS[3] state hash
-- ARGV[1] most jobs taken from each of the two in this call (bounds the time Redis is held)
-- Returns: {jobs removed from the ready list, jobs removed from the scheduled set}
-- Invariant: a purged job's id leaves the state hash with its envelope, so status() never reports
-- a job that no longer exists; running jobs (in processing lists) and the dead set are untouched.
-- allow-oom: every write here frees memory, and emptying a queue is how an operator rescues a full Redis.
local n = tonumber(ARGV[1])
local function forget(env)
  local id = string.match(env, '^{"i":"([^"]+)"')
  if id then redis.call('HDEL', KEYS[3], id) end
end
local ready = redis.call('LPOP', KEYS[1], n) or {}
for _, env in ipairs(ready) do forget(env) end
local scheduled = redis.call('ZPOPMIN', KEYS[2], n)
for i = 1, #scheduled, 2 do forget(scheduled[i]) end
return {#ready, #scheduled / 2}
