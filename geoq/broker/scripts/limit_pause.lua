#!lua
-- Pause one key value of a route (or the whole route) for every worker: its jobs wait until then.
-- KEYS[1] the route's paused set
-- ARGV[1] the pause member ("k:VALUE", or "route"), ARGV[2] pause ms
-- Returns: the milliseconds until the key's pause ends (a longer pause already set is kept).
-- Invariant: pauses only lengthen; ended pauses are dropped, and the set expires with its last.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = now + tonumber(ARGV[2])
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if old and old > ends then ends = old end
redis.call('ZADD', KEYS[1], ends, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(last[2]) - now, 0) + 1000)
return ends - now
