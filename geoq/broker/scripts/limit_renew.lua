#!lua
-- Extend the leases of runs still going on (the worker's heartbeat proves it is alive).
-- KEYS[1] the route's lease set, KEYS[2..] the lease set of each key value named
-- ARGV[1] lease time ms, then per run: the index of its key value's lease set among KEYS[2..]
-- (0: none) and its lease member
-- Returns: the number of route leases extended.
-- Invariant: only leases still held are extended (XX): a lease that expired while this worker
-- was silent (its slot was given to another run) is not taken back.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = now + tonumber(ARGV[1])
local extended = 0
for i = 2, #ARGV, 2 do
  local ki = tonumber(ARGV[i])
  extended = extended + redis.call('ZADD', KEYS[1], 'XX', 'CH', ends, ARGV[i + 1])
  if ki > 0 then redis.call('ZADD', KEYS[1 + ki], 'XX', ends, ARGV[i + 1]) end
end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]) + 1000) end
return extended
