#!lua
-- Move failed jobs from this worker's processing list to the scheduled set.
-- KEYS[1] processing list, KEYS[2] scheduled set, KEYS[3] state hash
-- ARGV[1] the time the delays count from (unix seconds), for a test harness that moves its clock
--   (geoq.testing); "" for Redis's own TIME.
-- ARGV[2..]: groups of 6: old envelope, new envelope, delay seconds, id, runs made, the state value's end
--   (last error, then a newline and the failed run's traceback: geoq.records.state_detail)
-- Returns: the 1-based positions of jobs not in the processing list (nothing written for them).
-- Invariant: the job leaves the processing list and enters the scheduled set in one step. A job
-- whose cancel was asked for while it ran (state "x": cancel.lua, which wrote its done record)
-- leaves the processing list and goes nowhere: a cancelled job is never retried.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) end
local fenced = {}
local n = 0
for i = 2, #ARGV, 6 do
  n = n + 1
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 0 then
    fenced[#fenced + 1] = n
  elseif string.sub(redis.call('HGET', KEYS[3], ARGV[i + 3]) or '', 1, 1) == 'x' then
    redis.call('HDEL', KEYS[3], ARGV[i + 3])
  else
    local due = now + tonumber(ARGV[i + 2])
    redis.call('ZADD', KEYS[2], due, ARGV[i + 1])
    redis.call('HSET', KEYS[3], ARGV[i + 3], 's|' .. ARGV[i + 4] .. '|' .. string.format('%.3f', due) .. '|' .. ARGV[i + 5])
  end
end
return fenced
