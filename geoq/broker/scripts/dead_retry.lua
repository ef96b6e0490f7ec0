#!lua
-- Put dead jobs back on the tail of their ready list with a fresh envelope (attempts reset).
-- KEYS[1] dead set, KEYS[2] ready list, KEYS[3] state hash, KEYS[4..8] the dead-set index
-- (_dead_index.lua), KEYS[9..] one done-record key per job
-- ARGV[1] the state value of a queued job that has made no runs
-- then pairs: the exact dead record (the set's member), the new envelope
-- Returns: one integer per job: 1 moved; 0 the record was gone (retried by another admin,
-- purged or trimmed meanwhile: nothing written); 2 left dead because its id is live again
-- (a producer enqueued the same id since); 3 left dead because the new envelope has no id.
-- Invariant: the record leaves the dead set and the envelope enters the ready list in one step,
-- only if this call removed the record, so concurrent retries never double a job and a trimmed
-- record is never resurrected; an id is in the state hash exactly while its job is live.
--#include _dead_index
local ix = {KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]}
local queued = ARGV[1]

local function revive(member, envelope, done_key)
  local id = string.match(envelope, '^{"i":"([^"]+)"')
  if not id then return 3 end
  local score = redis.call('ZSCORE', KEYS[1], member)
  if not score then return 0 end  -- checked first: a record another admin just retried has a live id now, but is gone
  if redis.call('HEXISTS', KEYS[3], id) == 1 then return 2 end
  redis.call('ZREM', KEYS[1], member)
  ix_unbury(ix, member, score)
  redis.call('RPUSH', KEYS[2], envelope)
  redis.call('HSET', KEYS[3], id, queued)
  -- The dead outcome is stale now; left behind it would outlive a later success stored with keep 0.
  redis.call('DEL', done_key)
  return 1
end

local out = {}
for i = 2, #ARGV, 2 do out[#out + 1] = revive(ARGV[i], ARGV[i + 1], KEYS[8 + #out + 1]) end
return out
