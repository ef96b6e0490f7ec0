#!lua flags=allow-oom
-- Record that jobs have started, without resurrecting one that is already settled.
-- KEYS[1] state hash
-- ARGV: pairs of id, state value
-- Returns: the number of states written.
-- allow-oom: it only overwrites an existing small value with one of the same size.
-- Invariant: only ids still in the state hash are written, so a mark that reaches Redis
-- after its job's ack (they travel on different connections) changes nothing; nor does one that
-- would overwrite a cancel's mark ("x" or "c": cancel.lua).
local written = 0
for i = 1, #ARGV, 2 do
  local code = string.sub(redis.call('HGET', KEYS[1], ARGV[i]) or '-', 1, 1)
  if code ~= '-' and code ~= 'x' and code ~= 'c' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    written = written + 1
  end
end
return written
