#!lua flags=allow-oom
-- Cancel one job, wherever it is, in one step.
-- KEYS[1] scheduled set, KEYS[2] state hash, KEYS[3] the queue's cancelling set, KEYS[4] the job's done key
-- ARGV[1] id, ARGV[2] the job's envelope as the scheduled set holds it ('' when not known),
-- ARGV[3] its type ('' when not known), ARGV[4] keep seconds (0: no done record)
-- Returns: 1 the job was queued, scheduled or running and ends cancelled; 0 it was not live
-- (unknown, finished, or already cancelled while waiting).
-- A scheduled job leaves the set here (ZREM of its exact envelope). A queued one stays in its
-- ready list, marked "c" in the state hash, so no list is searched: the fetch that meets it
-- drops it (fetch.lua). A running one is marked "x" and named in the cancelling set, which
-- its worker reads about once a second to interrupt the run; every way that run can end
-- before then honours the mark (retry.lua, handback.lua and reap.lua drop the job), except a
-- success or a death, whose outcome then stands. The done record (geoq.records, whose codec
-- this mirrors) is written now, so a job dropped later needs none of its own.
-- allow-oom: cancelling is how an operator sheds work; it frees at least what it adds.
local id, scheduled, keep = ARGV[1], ARGV[2], tonumber(ARGV[4])
local state = redis.call('HGET', KEYS[2], id)
if not state then return 0 end
local code = string.sub(state, 1, 1)
if code == 'c' then return 0 end
if code == 'x' then return 1 end
if keep > 0 then
  local attempts, detail = string.match(state, '^.|(%d*)|[^|]*|(.*)$')
  local err = detail and string.match(detail, '^([^\n]+)') or cjson.null
  redis.call('SET', KEYS[4], cjson.encode({s = 'cancelled', t = ARGV[3] ~= '' and ARGV[3] or cjson.null,
    a = tonumber(attempts) or 0, e = err, r = cjson.null, x = cjson.null}), 'EX', keep)
end
if code == 'r' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  redis.call('HSET', KEYS[2], id, 'x' .. string.sub(state, 2))
  redis.call('ZADD', KEYS[3], now, id)
  -- A request whose run ended some other way stays behind: an hour bounds how long.
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 3600)
elseif code == 's' and scheduled ~= '' and redis.call('ZREM', KEYS[1], scheduled) == 1 then
  redis.call('HDEL', KEYS[2], id)
else
  redis.call('HSET', KEYS[2], id, 'c' .. string.sub(state, 2))  -- queued, or promoted since it was read
end
return 1
