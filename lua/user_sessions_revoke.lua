#!lua
-- user_sessions_revoke, version: 1
-- Revokes one bounded batch of a user's active sessions, each with its snapshot and event.
-- The caller repeats until nothing remains, so Redis is never blocked for long.
-- KEYS[1] user's active index  KEYS[2] gateway event stream
-- ARGV[1] reason_code  ARGV[2] actor_type  ARGV[3] actor_id ('' when none)  ARGV[4] batch size
-- ARGV[5] revoked-session retention ms  ARGV[6] stream MAXLEN
-- ARGV[7] session key prefix  ARGV[8] gateway snapshot key prefix (keys are prefix .. id)
-- Reply: {revoked in this batch, active sessions remaining}
--!include common.lua
--!include session.lua
--!include projection.lua

local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1)
local batch, stale = {}, {}
for _, id in ipairs(ids) do
  local s = session_load(ARGV[7] .. id)
  if s and s.status == 'active' then
    redis.call('GET', ARGV[8] .. id) -- fails here, before any write, on a wrong-type snapshot
    table.insert(batch, s)
  else
    table.insert(stale, id)
  end
end
if #ids > 0 then
  local stream_error = projection_check_stream(KEYS[2])
  if stream_error then
    return stream_error
  end
end

local now = now_ms()
local retention = tonumber(ARGV[5])
for _, s in ipairs(batch) do
  session_revoke_apply(ARGV[7] .. s.device_session_id, KEYS[1], s, now, ARGV[1], ARGV[2], ARGV[3], retention)
  projection_write(ARGV[8] .. s.device_session_id, KEYS[2], ARGV[6], s, now, retention)
end
if #stale > 0 then
  redis.call('ZREM', KEYS[1], unpack(stale))
end
return {#batch, redis.call('ZCARD', KEYS[1])}
