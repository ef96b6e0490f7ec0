#!lua flags=allow-oom
-- One bounded step of deleting a group of dead records (geoq.broker.groups): its oldest records.
-- KEYS[1] dead set, KEYS[2..6] the dead-set index (_dead_index.lua)
-- ARGV[1] the group's fingerprint, ARGV[2] most records removed in this call
-- Returns: {records removed, records of the group left}
-- Invariant: a record and its index entry leave together. An entry whose record is gone (which
-- no script leaves behind) is dropped too, so that repeated steps always end.
-- allow-oom: every write here frees memory.
--#include _dead_index
local ix = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local fp = ARGV[1]
local entries = redis.call('ZRANGE', ix[3], '[' .. fp .. ':', '(' .. fp .. ';', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]))
local removed, touched = 0, {[fp] = true}
for _, entry in ipairs(entries) do
  local member, score = ix_record(KEYS[1], entry)
  if member then
    redis.call('ZREM', KEYS[1], member)
    ix_unbury(ix, member, score, touched)
    removed = removed + 1
  else
    redis.call('ZREM', ix[3], entry)
  end
end
ix_regroup_all(ix, touched)
return {removed, redis.call('ZLEXCOUNT', ix[3], '[' .. fp .. ':', '(' .. fp .. ';')}
