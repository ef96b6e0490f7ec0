#!lua
-- Take the rest of a fetch batch: move up to ARGV[1] jobs, one LMOVE each, from the head of
-- the ready list to the tail of this worker's processing list, and mark each running.
-- One command instead of one LMOVE per job: the batch costs one reply to parse, not one per job.
-- KEYS[1] ready list, KEYS[2] processing list, KEYS[3] state hash, KEYS[4] the queue's paused flag
-- ARGV[1] how many at most (jobs dropped as cancelled do not count; at most 1000 are dropped per call)
-- Returns: {tail, paused, then the envelopes moved, in order (fewer when the ready list ran out)}.
-- tail is 1 when the job at the processing list's tail was taken out again unmarked (the job a
-- BLMOVE of the same pipeline moved: the caller drops BLMOVE's reply); paused is 1 when the
-- queue is paused, and then nothing is moved.
-- Invariant: a job in a processing list is marked running ("r|RUNS+1||", geoq.records) from
-- the moment it is moved; only ids still in the state hash are written (never a settled one).
-- The worker marks a job again, with its last error, when its envelope carries a history.
-- The job a BLMOVE moved just before this call (same pipeline) is the list's tail: it is
-- marked here too, unless the tail is already marked (an earlier fetch's job). A paused queue
-- gets BLMOVE's job back at the head of its ready list, where it was; a job cancelled while
-- it waited (state "c") is dropped here, its done record already written by cancel.lua.
local paused = redis.call('EXISTS', KEYS[4])

-- 'mark' (marked running now), 'drop' (cancelled: taken out of the processing list, id
-- forgotten), or nil (left as it is: not ours, already marked, or a cancel under way).
local function take(envelope, unmarked_only)
  local id, runs = string.match(envelope, '^{"i":"([^"]+)","a":(%d+),')
  if not id then return nil end  -- bytes that are not ours: the worker dead-letters them
  local state = redis.call('HGET', KEYS[3], id)
  if not state then return nil end
  local code = string.sub(state, 1, 1)
  if code == 'c' then
    redis.call('RPOP', KEYS[2])
    redis.call('HDEL', KEYS[3], id)
    return 'drop'
  end
  if code == 'q' or code == 's' then
    if unmarked_only and paused == 1 then
      redis.call('LPUSH', KEYS[1], redis.call('RPOP', KEYS[2]))
      return 'drop'
    end
    redis.call('HSET', KEYS[3], id, 'r|' .. (tonumber(runs) + 1) .. '||')
    return 'mark'
  end
  return nil
end

local tail_gone = 0
local tail = redis.call('LINDEX', KEYS[2], -1)
if tail and take(tail, true) == 'drop' then tail_gone = 1 end
local out = {tail_gone, paused}
if paused == 1 then return out end
-- Dropped jobs do not count against the batch, up to 1000 of them per call (a long run of
-- cancelled jobs is dropped over several calls, none holding Redis for long).
local wanted, drops = tonumber(ARGV[1]) + 2, 1000
while #out < wanted do
  local envelope = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not envelope then break end
  if take(envelope, false) ~= 'drop' then
    out[#out + 1] = envelope
  else
    drops = drops - 1
    if drops == 0 then break end
  end
end
return out
