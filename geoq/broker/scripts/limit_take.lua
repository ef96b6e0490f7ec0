#!lua
-- Admit a batch of one route's jobs under its limits: for each job, take a permit (a rate
-- token of the route and of its key value, and a concurrency slot of each as a lease), or
-- say what held it back and when to try again.
-- KEYS[1] the route's state hash, KEYS[2] its lease set, KEYS[3] its paused set, then per key
-- value named in this batch (in ARGV order): KEYS[2+2i] its state hash, KEYS[3+2i] its lease set
-- ARGV[1] route interval ms (0: no rate), ARGV[2] route burst tolerance ms, ARGV[3] route
-- concurrency (0: none), ARGV[4..6] the same per key value, ARGV[7] lease time ms, ARGV[8] the
-- route's pause member ('' when the route is not paused as a whole), ARGV[9] K key values,
-- ARGV[10..9+K] each key value's pause member ('' when not adaptive), then per job: the index
-- of its key value (0: none) and its lease member ("worker|job").
-- Returns: per job, in order, a code (0 granted, 1 rate, 2 concurrency, 3 key rate, 4 key
-- concurrency, 5 paused) and the milliseconds to wait before asking again (0 when granted).
-- Invariant: a job is granted all its permits or none; at most `concurrency` unexpired leases
-- and, in any window of W seconds, at most rate x W + burst grants, whatever the number of
-- workers asking. Rates are GCRA ("tat": theoretical arrival time). Jobs held back are spread
-- out in time: each limit keeps a wait line ("line" for rates, "cline" for concurrency, the
-- latter spaced by the mean run time / concurrency) that each denial joins at its end, so held
-- jobs come back about as fast as permits free up, not all at once, and are never polled for.
-- Idle state expires: a key value's hash once its schedule and lines are in the past.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r_int, r_tol, r_conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local k_int, k_tol, k_conc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl, route_pause, nkeys = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local leasing = r_conc > 0 or k_conc > 0

local function load(key, leases, count_leases)
  local v = redis.call('HMGET', key, 'tat', 'line', 'cline')
  local s = {key = key, leases = leases, tat = tonumber(v[1]) or 0, line = tonumber(v[2]) or 0,
             cline = tonumber(v[3]) or 0, running = 0, dirty = false, leased = false}
  if count_leases then
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)  -- a dead worker's slots come back here
    s.running = redis.call('ZCARD', leases)
  end
  return s
end

local route = load(KEYS[1], KEYS[2], leasing)
local rv = redis.call('HMGET', KEYS[1], 'ewma', 'win', 'n', 'prev')
local ewma = tonumber(rv[1]) or 100
local keys = {}
for i = 1, nkeys do
  keys[i] = load(KEYS[2 + 2 * i], KEYS[3 + 2 * i], k_conc > 0)
  keys[i].pause = ARGV[9 + i]
end

local pauses = {}
local function paused_until(member)
  if member == '' then return nil end
  if pauses[member] == nil then
    pauses[member] = tonumber(redis.call('ZSCORE', KEYS[3], member)) or 0
  end
  if pauses[member] > now then return pauses[member] end
  return nil
end

local function rate_wait(s, int, tol)   -- the time a token is due; nil when one is there now
  if int <= 0 then return nil end
  local due = math.max(s.tat, now) - tol
  if due > now then return due end
  return nil
end

local function join_rate_line(s, int, due)
  local wake = math.max(s.line, due)
  s.line, s.dirty = wake + int, true
  return wake
end

local function join_slot_line(s, conc)
  local spacing = math.max(1, ewma / conc)
  local wake = math.max(s.cline, now + spacing)
  s.cline, s.dirty = wake + spacing, true
  return wake
end

local function grant(s, int, member, lease)
  if int > 0 then s.tat, s.dirty = math.max(s.tat, now) + int, true end
  if lease then
    redis.call('ZADD', s.leases, now + ttl, member)
    s.running, s.leased = s.running + 1, true
  end
end

local out, granted = {}, 0
local base = 10 + nkeys
for j = base, #ARGV, 2 do
  local ki = tonumber(ARGV[j])
  local member = ARGV[j + 1]
  local k = keys[ki]
  local code, wake = 0, now
  local ends = paused_until(k and k.pause or route_pause)
  local r_due, k_due = rate_wait(route, r_int, r_tol), k and rate_wait(k, k_int, k_tol)
  if ends then
    code, wake = 5, ends
  elseif r_conc > 0 and route.running >= r_conc then
    code, wake = 2, join_slot_line(route, r_conc)
  elseif k and k_conc > 0 and k.running >= k_conc then
    code, wake = 4, join_slot_line(k, k_conc)
  elseif r_due then
    code, wake = 1, join_rate_line(route, r_int, r_due)
  elseif k_due then
    code, wake = 3, join_rate_line(k, k_int, k_due)
  else
    grant(route, r_int, member, leasing)
    if k then grant(k, k_int, member, k_conc > 0) end
    granted = granted + 1
  end
  out[#out + 1] = code
  out[#out + 1] = wake - now
end

local function save(s, idle)
  if s.dirty then
    redis.call('HSET', s.key, 'tat', s.tat, 'line', s.line, 'cline', s.cline)
    redis.call('PEXPIRE', s.key, math.ceil(math.max(s.tat, s.line, s.cline, now) - now + idle))
  end
  if s.leased then redis.call('PEXPIRE', s.leases, ttl + 1000) end
end

save(route, 3600000)
for i = 1, nkeys do save(keys[i], 1000) end
if granted > 0 then   -- grants per second, for `geoq stats`: this second's count and the last one's
  local sec, win, n, prev = math.floor(now / 1000), tonumber(rv[2]) or 0, tonumber(rv[3]) or 0, tonumber(rv[4]) or 0
  if win == sec then n = n + granted
  elseif win == sec - 1 then prev, n = n, granted
  else prev, n = 0, granted end
  redis.call('HSET', KEYS[1], 'win', sec, 'n', n, 'prev', prev)
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], 3600000) end
end
return out
