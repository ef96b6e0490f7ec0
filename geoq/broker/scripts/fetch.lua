#!lua
-- Take the rest of a fetch batch: move up to ARGV[1] jobs, one LMOVE each, from the head of
-- the ready list to the tail of this worker's processing list, and mark each running.
-- One command instead of one LMOVE per job: the batch costs one reply to parse, not one per job.
-- KEYS[1] ready list, KEYS[2] processing list, KEYS[3] state hash; ARGV[1] how many at most
-- Returns: the envelopes moved, in order (fewer when the ready list ran out)
-- Invariant: a job in a processing list is marked running ("r|RUNS+1||", geoq.records) from
-- the moment it is moved; only ids still in the state hash are written (never a settled one).
-- The worker marks a job again, with its last error, when its envelope carries a history.
-- The job a BLMOVE moved just before this call (same pipeline) is the list's tail: it is
-- marked here too, unless the tail is already marked (an earlier fetch's job).
local function mark(envelope)
  local id, runs = string.match(envelope, '^{"i":"([^"]+)","a":(%d+),')
  if not id then return end  -- bytes that are not ours: the worker dead-letters them
  local state = redis.call('HGET', KEYS[3], id)
  if state and string.sub(state, 1, 1) ~= 'r' then
    redis.call('HSET', KEYS[3], id, 'r|' .. (tonumber(runs) + 1) .. '||')
  end
end

local tail = redis.call('LINDEX', KEYS[2], -1)
if tail then mark(tail) end
local moved = {}
for _ = 1, tonumber(ARGV[1]) do
  local envelope = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not envelope then break end
  mark(envelope)
  moved[#moved + 1] = envelope
end
return moved
