#!lua
-- Run a scheduled job now: move it from the scheduled set to the head of its ready list.
-- KEYS[1] scheduled set, KEYS[2] ready list, KEYS[3] state hash
-- ARGV[1] the job's envelope, exactly as the scheduled set holds it
-- Returns: 1 moved; 0 it was no longer scheduled (promoted, cancelled or moved by someone else).
-- Invariant: the job leaves the set and enters the list in one step, only if this call removed
-- it, so two operators (or a promotion) never double it. Its state becomes queued ("q|RUNS||",
-- geoq.records), keeping its runs and last error; its due time goes, as it is due now.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
local id = string.match(ARGV[1], '^{"i":"([^"]+)"')
local state = id and redis.call('HGET', KEYS[3], id)
if state then
  local runs, detail = string.match(state, '^s|(%d*)|[^|]*|(.*)$')
  if runs then redis.call('HSET', KEYS[3], id, 'q|' .. runs .. '||' .. detail) end
end
return 1
