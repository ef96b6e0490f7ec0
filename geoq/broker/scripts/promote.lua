#!lua
-- Move due jobs from the scheduled set to the tail of the ready list.
-- KEYS[1] scheduled set, KEYS[2] ready list
-- ARGV[1] most jobs to move in this call (bounds the time the script holds Redis)
-- ARGV[2] optional: the time to promote as of (unix seconds), for a test harness that moves its
--   clock (geoq.testing); absent, Redis's own TIME
-- Returns: the number of jobs moved.
-- Invariant: a due job is moved exactly once however many workers promote at the same time,
-- because the read and the move happen inside one script.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[2] then now = tonumber(ARGV[2]) end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, env in ipairs(due) do
  redis.call('ZREM', KEYS[1], env)
  redis.call('RPUSH', KEYS[2], env)
end
return #due
