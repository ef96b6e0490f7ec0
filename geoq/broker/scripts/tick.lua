#!lua
-- Claim one tick of a schedule and enqueue its job, unless that tick (or a later one) is claimed.
-- KEYS[1] the queue's ticks hash (schedule name -> last tick claimed), KEYS[2] ready list,
-- KEYS[3] state hash
-- ARGV[1] schedule name, ARGV[2] the tick (unix seconds), ARGV[3] job id, ARGV[4] its state value
-- ("q|0||", built by geoq.records), ARGV[5] the envelope
-- Returns: 1 claimed (the job is stored, or its id was still live: nothing more written), 0 the
-- tick was already claimed (nothing written).
-- Invariant: a schedule's ticks are claimed in increasing order, each at most once, and the
-- claim and the job's enqueue are one step: however many workers try a tick, one job is stored,
-- and a worker dying between the two cannot lose the tick's job.
-- No allow-oom: under maxmemory Redis refuses the script whole, and the next tick tries again.
local last = redis.call('HGET', KEYS[1], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('HSETNX', KEYS[3], ARGV[3], ARGV[4]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[5])
end
return 1
