#!lua flags=allow-oom
-- One bounded step of returning a dead worker's processing list of one queue: the tail's jobs
-- (at most ARGV[4] of them) go to the head of that queue, counting a delivery on each; a job whose
-- workers have died max_deliveries times goes to the dead set (which the caller trims afterwards
-- with trim.lua, in bounded steps). The caller repeats steps until the list is empty, so no
-- single call holds Redis for long whatever the backlog.
-- KEYS[1] the dead worker's processing list, KEYS[2] ready list, KEYS[3] dead set,
-- KEYS[4] state hash, KEYS[5] the queue's worker set, KEYS[6..10] the dead-set index (_dead_index.lua),
-- KEYS[11..] done-record keys, one per id in ARGV[6..] (the ids the caller read from the list's tail)
-- ARGV[1] max_deliveries, ARGV[2] the dead worker's id, ARGV[3] keep seconds for done records
-- (0: none), ARGV[4] how many jobs to move at most, ARGV[5] the queue's name (for the group:
-- geoq.fingerprint's digest over queue, type, "max_deliveries" and MAX_DELIVERIES_TITLE),
-- ARGV[6..] job ids, in the order of KEYS[11..]
-- Returns: {jobs returned to ready, jobs dead-lettered, jobs left in the list, then the type of each
-- dead-lettered job ('' if unknown)}
-- Invariant: each job moves exactly once, in one step; the worker leaves the queue's worker set in the
-- step that finds its list empty, never before. Two reapers stepping at once still move each job once
-- (a job popped here whose id the caller did not read is moved without its done record).
-- The envelope header {"i":ID,"a":RUNS[,"d":DEATHS], is rewritten as text (runs and deaths + 1);
-- the payload is never decoded. Bytes without that header go back untouched, for the
-- worker that fetches them to dead-letter.
-- A job whose cancel was asked for (state "x" or "c": cancel.lua wrote its done record) is
-- dropped instead, counted as returned.
-- allow-oom: the rewritten header grows by a byte or two while the job's old copy is freed.
--#include _dead_index
local MAX_DELIVERIES_TITLE = 'its worker died during <num> runs'
local ix = {KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local max_deliveries = tonumber(ARGV[1])
local keep = tonumber(ARGV[3])
local done_key = {}
for i = 6, #ARGV do done_key[ARGV[i]] = KEYS[i + 5] end
local returned, buried = 0, 0
local buried_types = {}
for _ = 1, tonumber(ARGV[4]) do
  local env = redis.call('RPOP', KEYS[1])
  if not env then break end
  local id, runs, rest = string.match(env, '^{"i":"([^"]+)","a":(%d+),(.*)$')
  local code = id and string.sub(redis.call('HGET', KEYS[4], id) or '', 1, 1) or ''
  if not id then
    redis.call('LPUSH', KEYS[2], env)
    returned = returned + 1
  elseif code == 'x' or code == 'c' then
    redis.call('HDEL', KEYS[4], id)
    returned = returned + 1
  else
    local deaths = 0
    local d, after = string.match(rest, '^"d":(%d+),(.*)$')
    if d then deaths, rest = tonumber(d), after end
    runs, deaths = tonumber(runs) + 1, deaths + 1
    local new = '{"i":"' .. id .. '","a":' .. runs .. ',"d":' .. deaths .. ',' .. rest
    if deaths >= max_deliveries then
      local err = 'its worker died during ' .. deaths .. ' runs'
      local job_type = string.match(rest, '^"t":"([^"]*)"') or cjson.null
      local kind = job_type ~= cjson.null and job_type or ''
      local fp = string.sub(redis.sha1hex(ARGV[5] .. '\31' .. kind .. '\31max_deliveries\31' .. MAX_DELIVERIES_TITLE), 1, 16)
      local title = cjson.encode({type = kind, error_type = 'max_deliveries', message = MAX_DELIVERIES_TITLE})
      local head, died = ix_bury(ix, fp, title, id, now + buried / 1000000)
      local record = cjson.encode({id = id, type = job_type, reason = 'max_deliveries',
        error = err, attempts = runs, died_at = now, envelope = new})
      redis.call('ZADD', KEYS[3], died, head .. string.sub(record, 2))
      redis.call('HDEL', KEYS[4], id)
      if keep > 0 and done_key[id] then
        redis.call('SET', done_key[id], cjson.encode({s = 'dead', t = job_type, a = runs, e = err, r = cjson.null,
          x = 'max_deliveries'}), 'EX', keep)
      end
      buried = buried + 1
      buried_types[#buried_types + 1] = string.match(rest, '^"t":"([^"]*)"') or ''
    else
      redis.call('LPUSH', KEYS[2], new)
      redis.call('HSET', KEYS[4], id, 'q|' .. runs .. '||worker died while running the job')
      returned = returned + 1
    end
  end
end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('SREM', KEYS[5], ARGV[2]) end
local out = {returned, buried, left}
for _, t in ipairs(buried_types) do out[#out + 1] = t end
return out
