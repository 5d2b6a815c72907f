#!lua
-- session_revoke, version: 1
-- Revokes one session (terminal) with its revoked snapshot and event in the same call.
-- KEYS[1] session  KEYS[2] its gateway snapshot  KEYS[3] gateway event stream
-- ARGV[1] reason_code  ARGV[2] actor_type  ARGV[3] actor_id ('' when none)
-- ARGV[4] revoked-session retention ms  ARGV[5] stream MAXLEN
-- ARGV[6], ARGV[7] head and tail of the user's active-index key (head .. user_id .. tail)
-- Reply: {'revoked' | 'already_revoked', field, value, ...} (the session hash) | {'not_found'}
-- Replay-safe: a second run finds the session revoked and changes nothing.
--!include common.lua
--!include session.lua
--!include projection.lua

local s = session_load(KEYS[1])
if not s then
  return {'not_found'}
end
local outcome = 'already_revoked'
if s.status == 'active' then
  outcome = 'revoked'
  local stream_error = projection_check_stream(KEYS[3])
  if stream_error then
    return stream_error
  end
  redis.call('GET', KEYS[2]) -- fails here, before any write, if the snapshot has the wrong type
  local now = now_ms()
  local retention = tonumber(ARGV[4])
  session_revoke_apply(KEYS[1], ARGV[6] .. s.user_id .. ARGV[7], s, now, ARGV[1], ARGV[2], ARGV[3], retention)
  projection_write(KEYS[2], KEYS[3], ARGV[5], s, now, retention)
end
return {outcome, unpack(redis.call('HGETALL', KEYS[1]))}
