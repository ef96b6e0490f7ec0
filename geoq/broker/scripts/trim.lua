#!lua flags=allow-oom
-- Drop the oldest records of a dead set past its bounds: one bounded step of a trim or a purge.
-- KEYS[1] dead set, KEYS[2..6] the dead-set index (_dead_index.lua), KEYS[7] (optional) the set's
-- trimmed counter, which counts what is dropped
-- ARGV[1] most records kept ('' for no bound), ARGV[2] most age in seconds ('' for no bound),
-- ARGV[3] most records dropped in this call (bounds the time Redis is held whatever the backlog)
-- Returns: {records dropped by this call, records still past the bounds after it (0: done)}
-- Invariant: records are scored by the Redis time of their death, so past either bound lie
-- exactly the lowest ranks; each call drops a prefix of them in one ZREMRANGEBYRANK, so
-- repeating it until it answers 0 leaves the set within its bounds and drops nothing else.
-- Each dropped record's index entry goes in the same step.
-- allow-oom: every write here frees memory (the counter grows by a digit at most).
--#include _dead_index
local ix = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local over = 0
if ARGV[2] ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  over = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])))
end
if ARGV[1] ~= '' then over = math.max(over, redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])) end
local n = math.min(over, tonumber(ARGV[3]))
if n <= 0 then return {0, 0} end
local gone = redis.call('ZRANGE', KEYS[1], 0, n - 1, 'WITHSCORES')
local touched = {}
for i = 1, #gone, 2 do ix_unbury(ix, gone[i], gone[i + 1], touched) end
ix_regroup_all(ix, touched)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
if KEYS[7] then redis.call('INCRBY', KEYS[7], n) end
return {n, over - n}
