#!lua
-- Put dead jobs back on the tail of their ready list with a fresh envelope (attempts reset).
-- KEYS[1] dead set, KEYS[2] ready list, KEYS[3] state hash, KEYS[4..] one done-record key per job
-- ARGV[1] the state value of a queued job that has made no runs
-- then pairs: the exact dead record (the set's member), the new envelope
-- Returns: one integer per job: 1 moved; 0 the record was gone (retried by another admin,
-- purged or trimmed meanwhile: nothing written); 2 left dead because its id is live again
-- (a producer enqueued the same id since); 3 left dead because the new envelope has no id.
-- Invariant: the record leaves the dead set and the envelope enters the ready list in one step,
-- only if this call removed the record, so concurrent retries never double a job and a trimmed
-- record is never resurrected; an id is in the state hash exactly while its job is live.
local queued = ARGV[1]
local out = {}
local n = 0
for i = 2, #ARGV, 2 do
  n = n + 1
  local id = string.match(ARGV[i + 1], '^{"i":"([^"]+)"')
  if not id then
    out[n] = 3
  elseif not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    out[n] = 0  -- checked first: a record another admin just retried has a live id now, but is gone
  elseif redis.call('HEXISTS', KEYS[3], id) == 1 then
    out[n] = 2
  else
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    redis.call('HSET', KEYS[3], id, queued)
    -- The dead outcome is stale now; left behind it would outlive a later success stored with keep 0.
    redis.call('DEL', KEYS[3 + n])
    out[n] = 1
  end
end
return out
