#!lua
-- access_probe, version: 1
-- Startup probe, run once per partition: proves that this ACL user may run, on a key of each
-- namespace the service writes (the key prefix, the gateway prefix, the partition's stream), the
-- write the scripts run there, and that each key is served here. Writes nothing.
-- KEYS[1] challenge: a key under the key prefix
-- KEYS[2] gateway_session: a key under the gateway prefix
-- KEYS[3] stream: the partition's event stream
-- Derives: nothing
-- Reply: 'ok', or an error naming the key and the write the user may not run
-- Replay: writes nothing, answers the same.
-- Failure: a key of another slot or a missing permission fails the call; nothing is written.
--!include common.lua: fail
--!include commit.lua: READ_TYPES, SEEN, read

local writes = {
  {'HSET', KEYS[1], 'status', 'x'},
  {'SET', KEYS[2], 'x'},
  {'XADD', KEYS[3], '*', 'event_type', 'x'},
}
for _, w in ipairs(writes) do
  read('TYPE', w[2])
  if not redis.acl_check_cmd(unpack(w)) then
    fail('NOPERM this user has no permission to run ' .. w[1] .. ' on ' .. w[2])
  end
end
return 'ok'
