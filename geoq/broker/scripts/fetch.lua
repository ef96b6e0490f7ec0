#!lua
-- Take the rest of a fetch batch: move up to ARGV[1] jobs, one LMOVE each, from the head of
-- the ready list to the tail of this worker's processing list. One command instead of one
-- LMOVE per job: the batch costs one reply to parse, not one per job.
-- KEYS[1] ready list, KEYS[2] processing list; ARGV[1] how many at most
-- Returns: the envelopes moved, in order (fewer when the ready list ran out)
local moved = {}
for _ = 1, tonumber(ARGV[1]) do
  local envelope = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not envelope then break end
  moved[#moved + 1] = envelope
end
return moved
