#!lua
-- Move due jobs from the scheduled set to the tail of the ready list; a due job whose expiry
-- has passed goes to the dead set instead, with reason "expired".
-- KEYS[1] scheduled set, KEYS[2] ready list, KEYS[3] dead set, KEYS[4] state hash, KEYS[5..9] the
-- dead-set index (_dead_index.lua)
-- ARGV[1] most jobs to move in this call (bounds the time the script holds Redis), ARGV[2] the queue's name
-- ARGV[3] optional: the time to promote as of (unix seconds), for a test harness that moves its
--   clock (geoq.testing); absent, Redis's own TIME
-- Returns: {jobs moved to the ready list, then id, type and runs made of each job that expired}.
-- Invariant: a due job is moved exactly once however many workers promote at the same time,
-- because the read and the move happen inside one script.
-- The expiry is read from the envelope's header (geoq.records: "x" right after "t"); the dead
-- record mirrors geoq.records.encode_dead (no history: the envelope holds it). Its done record
-- needs a key named by the id, so the caller writes it after this call. The group of an expired
-- job is geoq.fingerprint's: its digest over queue, type, "expired" and EXPIRED_TITLE.
--#include _dead_index
local EXPIRED_TITLE = 'Expired: not started by its expiry'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[3] then now = tonumber(ARGV[3]) end

local function expired(env)
  local id, runs, rest = string.match(env, '^{"i":"([^"]+)","a":(%d+),(.*)$')
  if not id then return nil end
  rest = string.gsub(rest, '^"d":%d+,', '', 1)
  local job_type, expires = string.match(rest, '^"t":"([^"]*)","x":([%d.]+),')
  if not expires or tonumber(expires) > now then return nil end
  return id, job_type, tonumber(runs)
end

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local ix = {KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]}
local out = {0}
local buried = 0
for _, env in ipairs(due) do
  redis.call('ZREM', KEYS[1], env)
  local id, job_type, runs = expired(env)
  if id then
    local fp = string.sub(redis.sha1hex(ARGV[2] .. '\31' .. job_type .. '\31expired\31' .. EXPIRED_TITLE), 1, 16)
    local title = cjson.encode({type = job_type, error_type = 'expired', message = EXPIRED_TITLE})
    local head, died = ix_bury(ix, fp, title, id, now + buried / 1000000)
    buried = buried + 1
    local record = cjson.encode({id = id, type = job_type, queue = ARGV[2], reason = 'expired',
      error = EXPIRED_TITLE, attempts = runs, died_at = now, traceback = cjson.null, envelope = env})
    redis.call('ZADD', KEYS[3], died, head .. string.sub(record, 2))
    redis.call('HDEL', KEYS[4], id)
    out[#out + 1] = id
    out[#out + 1] = job_type
    out[#out + 1] = runs
  else
    redis.call('RPUSH', KEYS[2], env)
    out[1] = out[1] + 1
  end
end
return out
