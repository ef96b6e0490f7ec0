#!lua flags=allow-oom
-- Settle runs a cancel interrupted: remove each exact envelope from this worker's processing
-- list, forget its id and its cancel request, and store its done record.
-- KEYS[1] processing list, KEYS[2] state hash, KEYS[3] cancelling set, KEYS[4..] one done key per job
-- ARGV[1] keep seconds (0: no done record); then groups of 3: envelope, id, done record
-- Returns: the 1-based positions of jobs not in the processing list (nothing written for them).
-- Invariant: the job leaves the processing list for good in one step; it is never retried.
-- allow-oom: like an ack, it frees the envelope before it writes a smaller, expiring record.
local keep = tonumber(ARGV[1])
local fenced = {}
local n = 0
for i = 2, #ARGV, 3 do
  n = n + 1
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    redis.call('ZREM', KEYS[3], ARGV[i + 1])
    if keep > 0 then redis.call('SET', KEYS[3 + n], ARGV[i + 2], 'EX', keep) end
  else
    fenced[#fenced + 1] = n
  end
end
return fenced
