#!lua
-- session_projection_republish, version: 1
-- Repairs a session's gateway projection from source of truth: rewrites the snapshot (and appends
-- its event) only when it is missing or older; never turns a revoked view active.
-- KEYS[1] session  KEYS[2] its gateway snapshot  KEYS[3] gateway event stream
-- ARGV[1] stream MAXLEN  ARGV[2] revoked-session retention ms (used when the session has no TTL)
-- Reply: {'repaired' | 'current', version} | {'not_found'}
--!include common.lua
--!include session.lua
--!include projection.lua

local s = session_load(KEYS[1])
if not s then
  return {'not_found'}
end
if not projection_needed(KEYS[2], s) then
  return {'current', s.version}
end
local stream_error = projection_check_stream(KEYS[3])
if stream_error then
  return stream_error
end
local retention = redis.call('PTTL', KEYS[1])
if retention <= 0 then
  retention = tonumber(ARGV[2])
end
projection_write(KEYS[2], KEYS[3], ARGV[1], s, now_ms(), retention)
return {'repaired', s.version}
