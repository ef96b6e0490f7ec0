-- The dead-set index (geoq.broker.groups), spliced into every script that adds records to a dead
-- set or removes them (scripts.py replaces a "--#include _dead_index" line with this file), so the
-- index changes in the same atomic step as the set.
-- ix: the index's keys, {groups, titles, index, ids, seq} (keys.QueueKeys.dead_index_keys).
-- A record carries its group and its sequence number at its head, {"fp":"FP","seq":N,...}, so a
-- script removing it finds its entry without decoding it. Its entry in the index zset,
-- "FP:DIED:SEQ:ID", sorts a group's records by time of death; DIED is the record's score written
-- to the microsecond, fixed width, so that score and entry name each other exactly.
-- Invariant: a dead record with a head has exactly one index entry, its group is in the groups zset
-- scored by its newest record's death, with a title, and its id (when it has one) names the entry.
local function ix_died(at)
  return string.format('%017.6f', at)
end

-- Index a record about to be added with death time `at`; returns its head ('{"fp":"FP","seq":N,',
-- which replaces the record's opening brace) and its score (a string: ZADD it exactly so).
local function ix_bury(ix, fp, title, id, at)
  local seq = redis.call('INCR', ix[5])
  local died = ix_died(at)
  local entry = fp .. ':' .. died .. ':' .. seq .. ':' .. id
  redis.call('ZADD', ix[3], 0, entry)
  redis.call('HSETNX', ix[2], fp, title)
  redis.call('ZADD', ix[1], 'GT', died, fp)
  if id ~= '' and redis.call('HSETNX', ix[4], id, entry) == 0 then  -- a job dead once more
    redis.call('HSET', ix[4], id, redis.call('HGET', ix[4], id) .. ' ' .. entry)
  end
  return '{"fp":"' .. fp .. '","seq":' .. seq .. ',', died
end

local function ix_forget_id(ix, id, entry)
  local kept = {}
  for e in string.gmatch(redis.call('HGET', ix[4], id) or '', '%S+') do
    if e ~= entry then kept[#kept + 1] = e end
  end
  if #kept == 0 then redis.call('HDEL', ix[4], id) else redis.call('HSET', ix[4], id, table.concat(kept, ' ')) end
end

-- The group's newest entry moved (or the group emptied): its place in the groups zset follows.
local function ix_regroup(ix, fp)
  local newest = redis.call('ZRANGE', ix[3], '(' .. fp .. ';', '[' .. fp .. ':', 'BYLEX', 'REV', 'LIMIT', 0, 1)[1]
  if newest then
    redis.call('ZADD', ix[1], 'XX', string.sub(newest, #fp + 2, #fp + 18), fp)
  else
    redis.call('ZREM', ix[1], fp)
    redis.call('HDEL', ix[2], fp)
  end
end

-- Take the entry of a record being removed (score: its score in the dead set) out of the index.
-- A record without a head (buried before the index existed, not yet rebuilt) has none. With
-- `touched`, the record's group is only named there, for one ix_regroup per group at the end
-- (a step removing hundreds of one group's records moves its place once, not each time).
local function ix_unbury(ix, member, score, touched)
  local fp, seq = string.match(member, '^{"fp":"(%x+)","seq":(%d+),')
  if not fp then return end
  local head = fp .. ':' .. ix_died(tonumber(score)) .. ':' .. seq .. ':'
  local entry = redis.call('ZRANGE', ix[3], '[' .. head, '(' .. head .. '\255', 'BYLEX', 'LIMIT', 0, 1)[1]
  if not entry then return end
  redis.call('ZREM', ix[3], entry)
  local id = string.sub(entry, #head + 1)
  if id ~= '' then ix_forget_id(ix, id, entry) end
  if touched then touched[fp] = true else ix_regroup(ix, fp) end
end

local function ix_regroup_all(ix, touched)
  for fp in pairs(touched) do ix_regroup(ix, fp) end
end

-- The dead record an index entry names: its exact member and score, or nil when it is gone.
local function ix_record(dead, entry)
  local fp, died, seq = string.match(entry, '^(%x+):([%d.]+):(%d+):')
  if not fp then return nil end
  local head = '{"fp":"' .. fp .. '","seq":' .. seq .. ','
  local found = redis.call('ZRANGE', dead, died, died, 'BYSCORE', 'WITHSCORES')
  for i = 1, #found, 2 do
    if string.sub(found[i], 1, #head) == head then return found[i], found[i + 1] end
  end
  return nil
end
