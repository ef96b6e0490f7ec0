#!lua flags=allow-oom
-- Settle finished jobs: remove each exact envelope from this worker's processing list.
-- KEYS[1] processing list, KEYS[2] state hash, KEYS[3..] one done-record key per job
-- ARGV[1] keep seconds (0: store no done record); then pairs: envelope, done record. The id is
-- read from the envelope's header (geoq.records: {"i":"ID",...}): one argument fewer per job.
-- Returns: the 1-based positions of jobs that were not in the processing list
-- (reaped or handed back meanwhile: they belong to someone else now, nothing is written for them).
-- allow-oom: an ack must work when Redis is full; it frees the envelope before it
-- writes a (smaller, expiring) done record.
-- The settled ids leave the state hash in one HDEL at the end, not one each (each redis.call
-- costs Redis about a microsecond beyond its command's work).
local keep = tonumber(ARGV[1])
local fenced, settled = {}, {}
local n = 0
for i = 2, #ARGV, 2 do
  n = n + 1
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    local id = string.match(ARGV[i], '^{"i":"([^"]+)"')
    if id then settled[#settled + 1] = id end
    if keep > 0 then redis.call('SET', KEYS[2 + n], ARGV[i + 1], 'EX', keep) end
  else
    fenced[#fenced + 1] = n
  end
end
for first = 1, #settled, 1000 do  -- unpack() takes 8000 values at most
  redis.call('HDEL', KEYS[2], unpack(settled, first, math.min(first + 999, #settled)))
end
return fenced
