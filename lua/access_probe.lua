#!lua
-- access_probe, version: 3
-- Startup probe, run once per partition: proves that this ACL user may run, on a key of each
-- namespace the service writes (the key prefix, the gateway prefix, the partition's stream),
-- every command the scripts run there, and that each key is served here. Writes nothing.
-- KEYS[1] challenge: a key under the key prefix
-- KEYS[2] gateway_session: a key under the gateway prefix
-- KEYS[3] stream: the partition's event stream
-- Reply: 'ok', or an error naming the command and the key the user may not run it on
-- Replay: writes nothing, answers the same.
-- Failure: a key of another slot or a missing permission fails the call; nothing is written.
--!include common.lua: fail
--!include commit.lua: DECLARED, declared, READ_TYPES, SEEN, read

local P, G, S = KEYS[1], KEYS[2], KEYS[3]
local checks = {
  {'HSET', P, 'f', 'v'}, {'HGET', P, 'f'}, {'HMGET', P, 'f'}, {'HGETALL', P},
  {'ZADD', P, '1', 'm'}, {'ZREM', P, 'm'}, {'ZRANGE', P, '0', '1'}, {'ZCARD', P}, {'ZSCORE', P, 'm'},
  {'SET', P, 'v'}, {'GET', P}, {'DEL', P}, {'EXISTS', P}, {'PTTL', P}, {'PEXPIRE', P, '1'},
  {'PEXPIREAT', P, '1'}, {'PERSIST', P}, {'TYPE', P},
  {'SET', G, 'v'}, {'GET', G}, {'TYPE', G},
  {'XADD', S, '*', 'f', 'v'}, {'XINFO', 'STREAM', S}, {'TYPE', S},
  {'TIME'},
}
for _, check in ipairs(checks) do
  if not redis.acl_check_cmd(unpack(check)) then
    fail('NOPERM this user has no permission to run ' .. table.concat(check, ' ', 1, math.min(#check, 3)))
  end
end
for _, key in ipairs({P, G, S}) do
  read('TYPE', key) -- served here
end
return 'ok'
