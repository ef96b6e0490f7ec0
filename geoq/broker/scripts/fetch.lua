#!lua
-- Take the rest of a fetch batch: move up to ARGV[1] jobs, in order, from the head of the
-- ready list to the tail of this worker's processing list, and mark each running.
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

-- The rest is taken in chunks, not one LMOVE, HGET and HSET per job: each redis.call costs
-- about a microsecond of Redis's CPU beyond the command's own work, three per job in a
-- batch of hundreds. A chunk is popped (LPOP with a count), judged here job by job exactly as
-- take() judges one, then moved in one RPUSH, marked in one HSET, its drops forgotten in one
-- HDEL; jobs popped past the drop limit go back to the head, in order. A job seen twice in a
-- chunk is judged by the state its first sight left. (The commands are the README's ACL line's.)
-- Dropped jobs do not count against the batch, up to 1000 of them per call (a long run of
-- cancelled jobs is dropped over several calls, none holding Redis for long).
local wanted, drops = tonumber(ARGV[1]) + 2, 1000
while #out < wanted and drops > 0 do
  -- at most 1000 a chunk: unpack() below passes two values a job, and Lua takes 8000 at most
  local chunk = redis.call('LPOP', KEYS[1], math.min(wanted - #out, 1000))
  if not chunk then break end
  local ids, runs = {}, {}
  for i, envelope in ipairs(chunk) do
    ids[i], runs[i] = string.match(envelope, '^{"i":"([^"]+)","a":(%d+),')
  end
  local known = {}   -- id -> its state now (as the chunk's moves so far leave it)
  local lookup = {}
  for i = 1, #chunk do
    if ids[i] and known[ids[i]] == nil then known[ids[i]] = false; lookup[#lookup + 1] = ids[i] end
  end
  if #lookup > 0 then
    local states = redis.call('HMGET', KEYS[3], unpack(lookup))
    for i, id in ipairs(lookup) do known[id] = states[i] end
  end
  local moved, marks, forgotten, taken = {}, {}, {}, 0
  for i, envelope in ipairs(chunk) do
    taken = i
    local id, state = ids[i], ids[i] and known[ids[i]]
    local code = state and string.sub(state, 1, 1)
    if code == 'c' then
      forgotten[#forgotten + 1] = id
      known[id] = false
      drops = drops - 1
    else
      if code == 'q' or code == 's' then
        local marked = 'r|' .. (tonumber(runs[i]) + 1) .. '||'
        marks[#marks + 1] = id
        marks[#marks + 1] = marked
        known[id] = marked
      end
      moved[#moved + 1] = envelope
      out[#out + 1] = envelope
    end
    if drops == 0 then break end
  end
  if taken < #chunk then
    local rest = {}
    for i = #chunk, taken + 1, -1 do rest[#rest + 1] = chunk[i] end
    redis.call('LPUSH', KEYS[1], unpack(rest))
  end
  if #moved > 0 then redis.call('RPUSH', KEYS[2], unpack(moved)) end
  if #marks > 0 then redis.call('HSET', KEYS[3], unpack(marks)) end
  if #forgotten > 0 then redis.call('HDEL', KEYS[3], unpack(forgotten)) end
end
return out
