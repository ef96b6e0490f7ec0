#!lua
-- Admit a batch of one route's jobs under its limits: for each job, take a permit (a rate
-- token of the route and of its key value, and a concurrency slot of each as a lease), or
-- say what held it back and when to come again.
-- KEYS[1] the route's state hash, KEYS[2] its lease set, KEYS[3] its paused set, KEYS[4] its
-- reserved set, then per key value named in this batch (in ARGV order): KEYS[2+3i] its state
-- hash, KEYS[3+3i] its lease set, KEYS[4+3i] its reserved set
-- ARGV[1] route interval ms (0: no rate), ARGV[2] route burst tolerance ms, ARGV[3] route
-- concurrency (0: none), ARGV[4..6] the same per key value, ARGV[7] lease time ms, ARGV[8] the
-- route's pause member ('' when the route is not paused as a whole), ARGV[9] K key values,
-- ARGV[10..9+K] each key value's pause member ('' when not adaptive), then per job: the index
-- of its key value (0: none), its lease member ("worker|job|n") and its job id.
-- Returns: per job, in order, a code (0 granted, 1 rate, 2 concurrency, 3 key rate, 4 key
-- concurrency, 5 paused) and milliseconds: to wait before coming again, or, for a job granted,
-- to wait before it starts (0 mostly, at most START_AHEAD).
-- Invariant: a job is granted all its permits or none; at most `concurrency` unexpired leases
-- and, in any window of W seconds, at most rate x W + burst rate permits, whatever the number
-- of workers asking. Rates are GCRA ("tat": theoretical arrival time). A job a rate holds back
-- gets the next permit reserved (tat moves on, the job id is kept with the permit's time), and
-- comes back for it: the permits keep their pace however late the job comes, and no held job
-- is passed over by one that came later. Starts keep the pace too: a second schedule ("st")
-- of the times granted jobs start, under the same rule, makes a job that came back on time
-- after one that came late start a little later (up to START_AHEAD ms), so two starts are
-- never closer than the rate allows however the jobs' delivery times vary. Jobs a concurrency limit holds back are spread out by
-- a wait line ("cline", spaced by the mean run time / concurrency) each denial joins at its
-- end, so they come back about as fast as slots free up, never polled for. A reservation
-- unclaimed 10 minutes after its time (its job cancelled) is dropped. Idle state expires: a key
-- value's keys once its schedule, line and reservations are in the past.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r_int, r_tol, r_conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local k_int, k_tol, k_conc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl, route_pause, nkeys = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local leasing = r_conc > 0 or k_conc > 0
local EARLY = 2          -- ms a job may come before its reserved permit (its wait was rounded down)
local UNCLAIMED = 600000
local START_AHEAD = 250  -- ms a granted job may be told to wait before it starts; beyond, it comes again

local function load(key, leases, reserved, count_leases, int)
  local v = redis.call('HMGET', key, 'tat', 'cline', 'st')
  local s = {key = key, leases = leases, reserved = reserved, tat = tonumber(v[1]) or 0,
             cline = tonumber(v[2]) or 0, st = tonumber(v[3]) or 0, running = 0, dirty = false,
             leased = false, last = 0}
  if count_leases then
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)  -- a dead worker's slots come back here
    s.running = redis.call('ZCARD', leases)
  end
  if int > 0 then redis.call('ZREMRANGEBYSCORE', reserved, '-inf', now - UNCLAIMED) end
  return s
end

local route = load(KEYS[1], KEYS[2], KEYS[4], leasing, r_int)
local rv = redis.call('HMGET', KEYS[1], 'ewma', 'win', 'n', 'prev')
local ewma = tonumber(rv[1]) or 100
local keys = {}
for i = 1, nkeys do
  keys[i] = load(KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i], k_conc > 0, k_int)
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

-- A rate's verdict for one job: nil, 'take' (a token is there) or 'use' (its reservation is
-- due), else the time its reserved permit is due (reserved now if it had none).
local function rate_check(s, int, tol, id)
  if int <= 0 then return nil end
  local slot = tonumber(redis.call('ZSCORE', s.reserved, id))
  if slot then
    if slot <= now + EARLY then return 'use' end
    return slot
  end
  local due = math.max(s.tat, now) - tol
  if due <= now then return 'take' end
  s.tat, s.dirty = math.max(s.tat, now) + int, true
  redis.call('ZADD', s.reserved, due, id)
  s.last = math.max(s.last, due)
  return due
end

local function join_slot_line(s, conc)
  local spacing = math.max(1, ewma / conc)
  local wake = math.max(s.cline, now + spacing)
  s.cline, s.dirty = wake + spacing, true
  return wake
end

local function start_of(s, int, tol)   -- the earliest start its start schedule allows
  if int <= 0 then return now end
  return math.max(now, s.st - tol)
end

local function grant(s, int, verdict, id, member, lease, start)
  if verdict == 'take' then s.tat, s.dirty = math.max(s.tat, now) + int, true end
  if int > 0 then s.st, s.dirty = math.max(s.st, start) + int, true end
  if verdict == 'use' then redis.call('ZREM', s.reserved, id) end
  if lease then
    redis.call('ZADD', s.leases, now + ttl, member)
    s.running, s.leased = s.running + 1, true
  end
end

local out, granted = {}, 0
for j = 10 + nkeys, #ARGV, 3 do
  local k, member, id = keys[tonumber(ARGV[j])], ARGV[j + 1], ARGV[j + 2]
  local code, wake = 0, now
  local ends = paused_until(k and k.pause or route_pause)
  local k_rate, r_rate
  if ends then
    code, wake = 5, ends
  elseif r_conc > 0 and route.running >= r_conc then
    code, wake = 2, join_slot_line(route, r_conc)
  elseif k and k_conc > 0 and k.running >= k_conc then
    code, wake = 4, join_slot_line(k, k_conc)
  else
    -- the key's permit first: a job its key holds back reserves none of the route's
    k_rate = k and rate_check(k, k_int, k_tol, id)
    if type(k_rate) == 'number' then
      code, wake = 3, k_rate
    else
      r_rate = rate_check(route, r_int, r_tol, id)
      if type(r_rate) == 'number' then code, wake = 1, r_rate end
    end
  end
  local start = now
  if code == 0 then
    start = math.max(start_of(route, r_int, r_tol), k and start_of(k, k_int, k_tol) or now)
    if start - now > START_AHEAD then code, wake = (k and k_int > 0) and 3 or 1, start end
  end
  if code == 0 then
    grant(route, r_int, r_rate, id, member, leasing, start)
    if k then grant(k, k_int, k_rate, id, member, k_conc > 0, start) end
    granted = granted + 1
    wake = start
  end
  out[#out + 1] = code
  out[#out + 1] = wake - now
end

local function save(s, idle)
  if s.dirty then
    redis.call('HSET', s.key, 'tat', s.tat, 'cline', s.cline, 'st', s.st)
    redis.call('PEXPIRE', s.key, math.ceil(math.max(s.tat, s.cline, s.st, now) - now + idle))
  end
  if s.last > 0 then redis.call('PEXPIRE', s.reserved, math.ceil(s.last - now + UNCLAIMED)) end
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
