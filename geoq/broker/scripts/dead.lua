#!lua
-- Move jobs from this worker's processing list to the dead set (trim.lua, in the same round
-- trip, then trims the set in bounded steps).
-- KEYS[1] processing list, KEYS[2] dead set, KEYS[3] state hash, KEYS[4..8] the dead-set index
-- (_dead_index.lua), KEYS[9..] one done-record key per job
-- ARGV[1] keep seconds, then groups of 7: old envelope, dead record without its envelope (a JSON object),
-- 'text' or 'hex' (how the record holds the envelope), id ('' when unknown), done record,
-- the record's group (geoq.fingerprint) and the group's title (JSON)
-- Returns: the 1-based positions of jobs not in the processing list (nothing written for them).
-- Invariant: a job leaves the processing list and enters the dead set in one step; the
-- dead set is scored by Redis time of death, so trimming it drops the oldest first (each job of
-- one call a microsecond after the one before: a score names one record, for the index).
-- The record's envelope is built here from the argument that names the job, so an envelope
-- of any size (an oversize one may be megabytes) leaves the worker once: "envelope" holds
-- it as a JSON string (cjson only encodes it, never decodes), "envelope_hex" holds bytes
-- that are not UTF-8, which a JSON string cannot carry (only those block Redis for long:
-- a 5 MiB one about 0.25 s, the price of not copying it twice its size in the worker).
local function hex(s)
  local digits = {}  -- built only when a record needs hex: byte -> two hex digits
  for c = 0, 255 do digits[string.char(c)] = string.format('%02x', c) end
  return (string.gsub(s, '.', digits))  -- about 50 ms per MiB, twice as fast as string.format
end

--#include _dead_index

local function with_envelope(head, record, envelope, form)
  local open = head .. string.sub(record, 2, -2)  -- the record's closing brace goes after the envelope
  if form == 'hex' then return open .. ',"envelope_hex":"' .. hex(envelope) .. '"}' end
  return open .. ',"envelope":' .. cjson.encode(envelope) .. '}'
end

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local keep = tonumber(ARGV[1])
local ix = {KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]}
local fenced = {}
local n = 0
for i = 2, #ARGV, 7 do
  n = n + 1
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    local head, died = ix_bury(ix, ARGV[i + 5], ARGV[i + 6], ARGV[i + 3], now + (n - 1) / 1000000)
    redis.call('ZADD', KEYS[2], died, with_envelope(head, ARGV[i + 1], ARGV[i], ARGV[i + 2]))
    if ARGV[i + 3] ~= '' then
      redis.call('HDEL', KEYS[3], ARGV[i + 3])
      if keep > 0 then redis.call('SET', KEYS[8 + n], ARGV[i + 4], 'EX', keep) end
    end
  else
    fenced[#fenced + 1] = n
  end
end
return fenced
