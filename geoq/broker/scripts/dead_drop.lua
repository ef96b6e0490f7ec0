#!lua flags=allow-oom
-- Remove these exact records from a dead set, with their index entries.
-- KEYS[1] dead set, KEYS[2..6] the dead-set index (_dead_index.lua)
-- ARGV: the records (exact set members)
-- Returns: how many of them were there (and are gone now).
-- Invariant: a record and its index entry leave together; a record already gone is skipped.
-- allow-oom: every write here frees memory.
--#include _dead_index
local ix = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local removed, touched = 0, {}
for i = 1, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score then
    redis.call('ZREM', KEYS[1], ARGV[i])
    ix_unbury(ix, ARGV[i], score, touched)
    removed = removed + 1
  end
end
ix_regroup_all(ix, touched)
return removed
