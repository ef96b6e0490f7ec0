#!lua
-- Add one flush of a worker's history tally to one queue-hour (layout: geoq.history).
-- KEYS[1] the hour's string of 60 minute slots, KEYS[2] the hour's hash: job type -> counts
-- ARGV[1] seconds both keys live (history.keep, plus the hour), ARGV[2] most types kept in the
-- hash, ARGV[3] the type counted past that, ARGV[4] how many slots follow (n), then n pairs
-- (minute of the hour 0-59, SLOT_BYTES bytes of uint32 deltas), then pairs (type, TYPE_BYTES
-- bytes of uint32 deltas)
-- Returns: the number of types counted under ARGV[3] because the hash was full
-- Invariant: each flush is added whole or not at all; every value stays a uint32 (capped), each
-- slot stays SLOT_BYTES wide at its place, and the hash never holds more than ARGV[2] types plus
-- ARGV[3], whatever the number of types producers use. Both keys expire ARGV[1] seconds after
-- their last write.
-- No allow-oom: under maxmemory Redis refuses the script whole, and the worker keeps its tally
-- for the next flush.
local keep, cap, other = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local slots = tonumber(ARGV[4])
local SLOT_FIELDS, TYPE_FIELDS = 64, 4
local SLOT_BYTES, TYPE_BYTES = 4 * SLOT_FIELDS, 4 * TYPE_FIELDS
local slot_format = '<' .. string.rep('I4', SLOT_FIELDS)
local type_format = '<' .. string.rep('I4', TYPE_FIELDS)
local MAX = 4294967295

local function added(old, delta, format, fields, width)
  local a = {}
  if string.len(old) == width then a = {struct.unpack(format, old)} end
  local b = {struct.unpack(format, delta)}
  local out = {}
  for i = 1, fields do out[i] = math.min(MAX, (a[i] or 0) + b[i]) end
  return struct.pack(format, unpack(out))
end

for i = 0, slots - 1 do
  local minute, delta = tonumber(ARGV[5 + 2 * i]), ARGV[6 + 2 * i]
  local offset = minute * SLOT_BYTES
  local old = redis.call('GETRANGE', KEYS[1], offset, offset + SLOT_BYTES - 1)
  redis.call('SETRANGE', KEYS[1], offset, added(old, delta, slot_format, SLOT_FIELDS, SLOT_BYTES))
end

local folded = 0
for i = 5 + 2 * slots, #ARGV, 2 do
  local name, delta = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[2], name)
  if not old and name ~= other and redis.call('HLEN', KEYS[2]) >= cap then
    name, folded = other, folded + 1
    old = redis.call('HGET', KEYS[2], name)
  end
  redis.call('HSET', KEYS[2], name, added(old or '', delta, type_format, TYPE_FIELDS, TYPE_BYTES))
end

if slots > 0 then redis.call('EXPIRE', KEYS[1], keep) end
if #ARGV >= 5 + 2 * slots then redis.call('EXPIRE', KEYS[2], keep) end
return folded
