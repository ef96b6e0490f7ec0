#!lua flags=allow-oom
-- Index dead records buried before the dead-set index existed (geoq.broker.groups.rebuild): each
-- record is rewritten with its group and sequence number at its head, its score kept (to the
-- microsecond), and indexed.
-- KEYS[1] dead set, KEYS[2..6] the dead-set index (_dead_index.lua)
-- ARGV: groups of 4: the exact record, its group (geoq.fingerprint), the group's title (JSON), its job id ('' if none)
-- Returns: how many records were indexed (one gone meanwhile, or indexed already, is skipped).
-- Invariant: the record is replaced and indexed in one step, so it is never missing nor indexed twice.
-- allow-oom: a record grows by a few dozen bytes; refusing would leave the index incomplete, not wrong.
--#include _dead_index
local ix = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local done = 0
for i = 1, #ARGV, 4 do
  local member = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], member)
  if score and string.match(member, '^{"') and not string.match(member, '^{"fp":"') then
    redis.call('ZREM', KEYS[1], member)
    local head, died = ix_bury(ix, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(score))
    redis.call('ZADD', KEYS[1], died, head .. string.sub(member, 2))
    done = done + 1
  end
end
return done
