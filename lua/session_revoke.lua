#!lua
-- session_revoke, version: 3
-- Revokes one session (terminal) with its revoked snapshot and event in the same call. On an
-- already revoked session it heals what a lost or failed earlier write left behind: a missing or
-- stale snapshot (with its event), an active-index entry, a missing revoked-index entry.
-- KEYS[1] session
-- KEYS[2] gateway_session: its snapshot
-- KEYS[3] stream
-- ARGV[1] reason_code
-- ARGV[2] actor_type
-- ARGV[3] actor_id: '' when none
-- ARGV[4] revoked_retention_ms
-- ARGV[5] stream_maxlen
-- ARGV[6] user_prefix: the user's index keys are user_prefix .. user_id .. a suffix below
-- ARGV[7] user_sessions_suffix
-- ARGV[8] user_active_sessions_suffix
-- ARGV[9] user_revoked_sessions_suffix
-- ARGV[10] request_id: unique per revoke request
-- Derives: user_sessions, user_active_sessions, user_revoked_sessions (of the record's user_id)
-- Reply: {'revoked' | 'already_revoked', field, value, ...} (the session hash) | {'not_found'}
-- Replay: the revoking call stores request_id in the record (`revoke_request_id`); a second run
-- answers 'revoked' again and writes nothing.
-- Failure: ARGV ranges, the record's fields and the types of the stream and of the three derived
-- index keys (in cluster mode also their slot) are checked before the first write.
--!include common.lua: MAX_MS, MAX_STREAM_LEN, now_ms, int, fail, arg_int, arg_str, key_type_is
--!include session.lua: SESSION_FIELDS, session_load, session_revoke_apply
--!include user_index.lua: USER_INDEX_PRUNE_BATCH, user_index_check, user_index_expired, user_index_settle
--!include projection.lua: projection_json, projection_needed, projection_write

local retention = arg_int(4, 1, MAX_MS)
local maxlen = arg_int(5, 1, MAX_STREAM_LEN)
local request_id = arg_str(10)
local s = session_load(KEYS[1])
if not s then
  return {'not_found'}
end
local user = ARGV[6] .. s.user_id
local idx = {all = user .. ARGV[7], active = user .. ARGV[8], revoked = user .. ARGV[9]}
user_index_check(idx)
key_type_is(KEYS[3], 'stream')
local now = now_ms()

if s.status == 'active' then
  local expired = user_index_expired(idx, now)
  local r = {reason = ARGV[1], actor_type = ARGV[2], actor_id = ARGV[3], request_id = request_id}
  session_revoke_apply(KEYS[1], idx, s, now, r, retention)
  projection_write(KEYS[2], KEYS[3], maxlen, s, now, retention)
  user_index_settle(idx, expired, now, retention, redis.call('EXISTS', idx.active) == 1)
  return {'revoked', unpack(redis.call('HGETALL', KEYS[1]))}
end

-- Already revoked: heal, reading everything first.
local stale_projection = projection_needed(KEYS[2], s)
local in_active = redis.call('ZSCORE', idx.active, s.device_session_id)
local in_revoked = redis.call('ZSCORE', idx.revoked, s.device_session_id)
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then
  ttl = retention
end
if stale_projection then
  projection_write(KEYS[2], KEYS[3], maxlen, s, now, ttl)
end
if in_active then
  redis.call('ZREM', idx.active, s.device_session_id)
end
if not in_revoked then
  redis.call('ZADD', idx.revoked, now + ttl, s.device_session_id)
end
local outcome = 'already_revoked'
if s.revoke_request_id == request_id then
  outcome = 'revoked'
end
return {outcome, unpack(redis.call('HGETALL', KEYS[1]))}
