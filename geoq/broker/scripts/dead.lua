#!lua
-- Move jobs from this worker's processing list to the dead set (trim.lua, in the same round
-- trip, then trims the set in bounded steps).
-- KEYS[1] processing list, KEYS[2] dead set, KEYS[3] state hash, KEYS[4..] one done-record key per job
-- ARGV[1] keep seconds, then groups of 4: old envelope, dead record, id ('' when unknown), done record
-- Returns: the 1-based positions of jobs not in the processing list (nothing written for them).
-- Invariant: a job leaves the processing list and enters the dead set in one step; the
-- dead set is scored by Redis time of death, so trimming it drops the oldest first.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local keep = tonumber(ARGV[1])
local fenced = {}
local n = 0
for i = 2, #ARGV, 4 do
  n = n + 1
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], now, ARGV[i + 1])
    if ARGV[i + 2] ~= '' then
      redis.call('HDEL', KEYS[3], ARGV[i + 2])
      if keep > 0 then redis.call('SET', KEYS[3 + n], ARGV[i + 3], 'EX', keep) end
    end
  else
    fenced[#fenced + 1] = n
  end
end
return fenced
