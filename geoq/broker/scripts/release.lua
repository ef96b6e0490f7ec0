#!lua flags=allow-oom
-- Start the window of a unique key whose job has ended.
-- KEYS[1] state hash, KEYS[2] the unique key's lock
-- ARGV[1] the job's id, ARGV[2] the window in seconds (0: free the key now)
-- Returns: 1 the window started (or the key was freed), 0 the lock is not this job's or the job is still live.
-- Invariant: only the job holding the lock releases it, and only once it is out of the state hash,
-- so a replayed or late release never frees a key a newer job holds.
-- allow-oom: it only sets a TTL or deletes.
if redis.call('GET', KEYS[2]) ~= ARGV[1] or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local window = tonumber(ARGV[2])
if window > 0 then
  redis.call('PEXPIRE', KEYS[2], math.max(1, math.floor(window * 1000)))
else
  redis.call('DEL', KEYS[2])
end
return 1
