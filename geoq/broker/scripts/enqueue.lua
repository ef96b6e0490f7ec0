#!lua
-- Store new jobs in one queue, skipping any id that is still queued, scheduled or running.
-- KEYS[1] ready list, KEYS[2] scheduled set, KEYS[3] state hash
-- ARGV: groups of 4 per job: id, envelope, where, value
--   where = "tail" | "head" (ready list end), "delay" (value: seconds from Redis now),
--           "at" (value: absolute unix seconds)
-- Returns: one integer per job, 1 stored, 0 already present (nothing written).
-- Invariant: a job id is in the state hash exactly while its envelope is in one
-- place of this queue, so a retried enqueue can never store a job twice.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 1, #ARGV, 4 do
  local id, env, where, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local due = nil
  if where == 'delay' then due = now + tonumber(value) elseif where == 'at' then due = tonumber(value) end
  local state = 'q|0||'
  if due then state = 's|0|' .. string.format('%.3f', due) .. '|' end
  if redis.call('HSETNX', KEYS[3], id, state) == 1 then
    if due then
      redis.call('ZADD', KEYS[2], due, env)
    elseif where == 'head' then
      redis.call('LPUSH', KEYS[1], env)
    else
      redis.call('RPUSH', KEYS[1], env)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
