#!lua
-- Store new jobs in one queue, all with one placement, skipping any id that is still queued,
-- scheduled or running.
-- KEYS[1] ready list, KEYS[2] scheduled set, KEYS[3] state hash, KEYS[4] (a unique job: then
--   exactly one envelope) the lock of its unique key
-- ARGV[1] where: "tail" | "head" (ready list end), "delay" (ARGV[2]: seconds from Redis now),
--   "at" (ARGV[2]: absolute unix seconds); ARGV[3..] the envelopes, each naming its id in its
--   header (geoq.records: {"i":"ID",...}, an id of characters JSON never escapes)
-- Returns: one integer per envelope, 1 stored, 0 already present (nothing written); for a unique
-- job whose key is held, {holder id} instead (nothing written).
-- Invariant: a job id is in the state hash exactly while its envelope is in one
-- place of this queue, so a retried enqueue can never store a job twice.
-- One argument per job, not four: a batch of a thousand costs the producer a quarter of the
-- argument encoding, the larger part of its cost (measured).
-- A unique key is held by the job its lock names while that job is live (in the state hash,
-- not cancelled) and, once it ended, while the lock's TTL (the key's window) runs; a lock with
-- neither is stale (its job ended where no release could reach it: purged, reaped dead,
-- cancelled while waiting) and is taken over. This script is the arbiter between producers.
local function holder(lock)
  local id = redis.call('GET', lock)
  if not id then return nil end
  if redis.call('PTTL', lock) > 0 then return id end
  local state = redis.call('HGET', KEYS[3], id)
  if state and string.sub(state, 1, 1) ~= 'c' then return id end
  return nil
end

if KEYS[4] then
  if #ARGV ~= 3 then return redis.error_reply('ERR geoq: a unique job is enqueued alone') end
  local held = holder(KEYS[4])
  if held then return {held} end
end
local where = ARGV[1]
local ids = {}
for i = 3, #ARGV do
  ids[i] = string.match(ARGV[i], '^{"i":"([^"]+)"')
  if not ids[i] then return redis.error_reply('ERR geoq: envelope ' .. (i - 2) .. ' has no id header') end
end
local due, state = nil, 'q|0||'
if where == 'delay' or where == 'at' then
  local t = redis.call('TIME')
  due = tonumber(ARGV[2])
  if where == 'delay' then due = tonumber(t[1]) + tonumber(t[2]) / 1000000 + due end
  state = 's|0|' .. string.format('%.3f', due) .. '|'
end
local out, stored = {}, {}
for i = 3, #ARGV do
  if redis.call('HSETNX', KEYS[3], ids[i], state) == 1 then
    if KEYS[4] then redis.call('SET', KEYS[4], ids[i]) end
    if due then stored[#stored + 1] = due end
    stored[#stored + 1] = ARGV[i]
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
-- One push for the stored jobs, in their order (a call per job cost Redis as much again).
if #stored > 0 then
  if due then
    redis.call('ZADD', KEYS[2], unpack(stored))
  elseif where == 'head' then
    redis.call('LPUSH', KEYS[1], unpack(stored))
  else
    redis.call('RPUSH', KEYS[1], unpack(stored))
  end
end
return out
