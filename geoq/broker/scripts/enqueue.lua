#!lua
-- Store new jobs in one queue, all with one placement, skipping any id that is still queued,
-- scheduled or running.
-- KEYS[1] ready list, KEYS[2] scheduled set, KEYS[3] state hash
-- ARGV[1] where: "tail" | "head" (ready list end), "delay" (ARGV[2]: seconds from Redis now),
--   "at" (ARGV[2]: absolute unix seconds); ARGV[3..] the envelopes, each naming its id in its
--   header (geoq.records: {"i":"ID",...}, an id of characters JSON never escapes)
-- Returns: one integer per envelope, 1 stored, 0 already present (nothing written).
-- Invariant: a job id is in the state hash exactly while its envelope is in one
-- place of this queue, so a retried enqueue can never store a job twice.
-- One argument per job, not four: a batch of a thousand costs the producer a quarter of the
-- argument encoding, the larger part of its cost (measured).
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
