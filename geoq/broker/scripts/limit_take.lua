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
-- ARGV[10..9+K] each key value's pause member ('' when not adaptive), ARGV[10+K] the number
-- of jobs, then three lists, each one argument with its items apart by spaces (one argument,
-- not one per job: redis-py's encoding of each argument cost more than the script): ARGV[11+K]
-- the job ids, ARGV[12+K] the index of each job's key value ('' when no job has one),
-- ARGV[13+K] each job's lease member, "worker|job|n" ('' when the route leases no slots),
-- ARGV[14+K] spare permits wanted (see below; 0: none).
-- Returns: the spare permits granted, then for each job not simply granted (most are, and then
-- the reply is short to build and to read), three numbers: its 1-based position in the batch,
-- a code (0 granted, 1 rate, 2 concurrency, 3 key rate, 4 key concurrency, 5 paused) and
-- milliseconds: to wait before coming again, or, for a job granted, before it starts (at most
-- START_AHEAD).
-- Invariant: a job is granted all its permits or none; at most `concurrency` unexpired leases
-- and, in any window of W seconds, at most rate x W + burst rate permits, whatever the number
-- of workers asking. Rates are GCRA ("tat": theoretical arrival time). A job a rate holds back
-- gets the next permit reserved (tat moves on, the job id is kept with the permit's time), and
-- comes back for it: the permits keep their pace however late the job comes, and no held job
-- is passed over by one that came later. Starts keep the pace too: a second schedule ("st")
-- of the times granted jobs start, under the same rule, makes a job that came back on time
-- after one that came late start a little later (up to START_AHEAD ms), so two starts are
-- never closer than the rate allows however the jobs' delivery times vary. Jobs a concurrency
-- limit holds back are spread out by a wait line ("cline", spaced by the mean run time /
-- concurrency) each denial joins at its end, so they come back about as fast as slots free
-- up, never polled for. A reservation
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
  if int > 0 then
    redis.call('ZREMRANGEBYSCORE', reserved, '-inf', now - UNCLAIMED)
    s.reservations = redis.call('ZCARD', reserved)   -- none: no job needs to look for its own
  end
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
  local slot = s.reservations > 0 and tonumber(redis.call('ZSCORE', s.reserved, id))
  if slot then
    if slot <= now + EARLY then return 'use' end
    return slot
  end
  local due = math.max(s.tat, now) - tol
  if due <= now then return 'take' end
  s.tat, s.dirty = math.max(s.tat, now) + int, true
  redis.call('ZADD', s.reserved, due, id)
  s.last, s.reservations = math.max(s.last, due), s.reservations + 1
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

local function words(text)
  local list = {}
  for word in string.gmatch(text, '%S+') do list[#list + 1] = word end
  return list
end

local jobs = tonumber(ARGV[10 + nkeys])
local out, granted = {}, 0

-- The common case in one step: a route rate alone, nobody waiting, not paused. As many jobs as
-- there are tokens (and starts) now are granted at once; the rest take the way below. When the
-- bucket holds at least twice as many more tokens as the worker wants spare, the limit is far
-- from binding: the spare permits are granted too, for the worker to spend on its next jobs
-- without asking (within a tenth of a second, geoq.worker.limiter), so a limit that never
-- binds costs one call per several fetches.
local first, spare = 1, 0
if nkeys == 0 and not leasing and r_int > 0 and route.reservations == 0 and not paused_until(route_pause) then
  local function room(at) return math.floor((now + r_tol - math.max(at, now)) / r_int) + 1 end
  local avail = math.min(room(route.tat), room(route.st))
  local count = math.max(0, math.min(jobs, avail))
  local wanted = tonumber(ARGV[14 + nkeys]) or 0
  if count == jobs and wanted > 0 and avail - jobs >= 2 * wanted then spare = wanted end
  if count + spare > 0 then
    local step = (count + spare) * r_int
    route.tat, route.st = math.max(route.tat, now) + step, math.max(route.st, now) + step
    route.dirty, granted, first = true, count + spare, count + 1
  end
end
out[1] = spare

local ids, kis, members = {}, {}, {}
if first <= jobs then
  ids, kis, members = words(ARGV[11 + nkeys]), words(ARGV[12 + nkeys]), words(ARGV[13 + nkeys])
end
for n = first, jobs do
  local k, member, id = keys[tonumber(kis[n] or 0)], members[n] or '', ids[n]
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
  if code ~= 0 or wake > now then
    out[#out + 1] = n
    out[#out + 1] = code
    out[#out + 1] = wake - now
  end
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
