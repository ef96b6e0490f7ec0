#!lua flags=allow-oom
-- Return unfinished jobs from this worker's processing list to the head of the ready list.
-- KEYS[1] processing list, KEYS[2] ready list, KEYS[3] state hash
-- ARGV: groups of 3: envelope, id ('' when unknown), state value
-- Returns: the number of jobs handed back.
-- allow-oom: a handback moves bytes without adding any, and must work when Redis is full.
-- Invariant: the job leaves the processing list and re-enters the ready list in one step. A job
-- cancelled meanwhile (state "x" or "c": cancel.lua, which wrote its done record) leaves the
-- list and goes nowhere (counted as moved: it is no longer this worker's).
local moved = 0
for i = 1, #ARGV, 3 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    local code = ARGV[i + 1] ~= '' and string.sub(redis.call('HGET', KEYS[3], ARGV[i + 1]) or '', 1, 1) or ''
    if code == 'x' or code == 'c' then
      redis.call('HDEL', KEYS[3], ARGV[i + 1])
    else
      redis.call('LPUSH', KEYS[2], ARGV[i])
      if ARGV[i + 1] ~= '' then redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 2]) end
    end
    moved = moved + 1
  end
end
return moved
