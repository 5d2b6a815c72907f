#!lua
-- session_revoke, version: 7
-- Revokes one session (terminal) with its revoked snapshot and event in the same call. On an
-- already revoked session it heals what a lost or failed earlier write left behind: a missing or
-- stale snapshot (with its event), an active-index entry, a missing revoked-index entry, and the
-- indexes' lifetime.
-- KEYS[1] session
-- KEYS[2] gateway_session: its snapshot
-- KEYS[3] stream
-- KEYS[4] user_sessions?: of the user the caller expects the session to belong to
-- KEYS[5] user_active_sessions?
-- KEYS[6] user_revoked_sessions?
-- ARGV[1] reason_code
-- ARGV[2] actor_type
-- ARGV[3] actor_id: '' when none
-- ARGV[4] revoked_retention_ms
-- ARGV[5] stream_maxlen
-- ARGV[6] request_id: unique per revoke request
-- ARGV[7] event_format: 'snapshot' or 'compact'
-- ARGV[8] user_id?: the user whose indexes KEYS[4..6] are
-- Optional (`?`): the user's indexes, all of them or none. Plan, then commit: a call without
-- them, or with another user's, answers {'need', user_id} (the record's) having written nothing.
-- Reply: {'need', user_id} | {'revoked' | 'already_revoked', field, value, ...} (the session hash) | {'not_found'}
-- Replay: the revoking call stores request_id in the record (`revoke_request_id`); a second run
-- answers 'revoked' again and writes nothing.
-- Failure: ARGV and the record's fields are read strictly, then `commit` preflights every write
-- (slot, ACL, type, stream id) before the first one.
--!include common.lua: MAX_MS, MAX_STREAM_LEN, MAX_INT, now_ms, int, fail, strict_int, stored_int, arg_int, arg_str, arg_opt
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, get_any_type, write, commit_stream_check, commit
--!include session.lua: SESSION_FIELDS, SESSION_REPLY_FIELDS, session_load, session_reply, session_revoke_apply
--!include user_index.lua: USER_INDEX_PRUNE_BATCH, user_index_read, user_index_settle
--!include projection.lua: projection_compact, projection_json, projection_needed, projection_write

local r = {reason = arg_str(1), actor_type = arg_str(2), actor_id = arg_opt(3), request_id = arg_str(6)}
local retention = arg_int(4, 1, MAX_MS)
local maxlen = arg_int(5, 1, MAX_STREAM_LEN)
local compact = projection_compact(7)
local s = session_load(KEYS[1])
if not s then
  return {'not_found'}
end
if not SHAPE_OPTIONAL or arg_str(8) ~= s.user_id then
  return {'need', s.user_id}
end
local idx = {all = KEYS[4], active = KEYS[5], revoked = KEYS[6]}
local now = now_ms()
local in_active = read('ZSCORE', idx.active, s.device_session_id)
local others_active = read('ZCARD', idx.active) - (in_active and 1 or 0) > 0

if s.status == 'active' then
  local index = user_index_read(idx, now, not others_active)
  session_revoke_apply(KEYS[1], idx, s, now, r, retention)
  projection_write(KEYS[2], KEYS[3], maxlen, s, now, retention, compact)
  user_index_settle(idx, index, now, retention, others_active)
  commit()
  return session_reply('revoked', s)
end

-- Already revoked: heal, reading everything first.
local stale_projection = projection_needed(KEYS[2], s)
local in_revoked = read('ZSCORE', idx.revoked, s.device_session_id)
local ttl = read('PTTL', KEYS[1])
if ttl <= 0 then
  ttl = retention
end
local index = user_index_read(idx, now, not others_active)
if stale_projection then
  projection_write(KEYS[2], KEYS[3], maxlen, s, now, ttl, compact)
end
if in_active then
  write('ZREM', idx.active, s.device_session_id)
end
if not in_revoked then
  write('ZADD', idx.revoked, now + ttl, s.device_session_id)
end
-- The indexes' lifetime: none while another session is active, else a TTL (a session revoked
-- before the revoked index existed, or a lost write, can leave them without one).
local lives = {read('PTTL', idx.all), read('PTTL', idx.revoked)}
local unsettled = (others_active and (lives[1] >= 0 or lives[2] >= 0))
  or (not others_active and (lives[1] == -1 or lives[2] == -1))
if unsettled or #index.expired > 0 then
  user_index_settle(idx, index, now, ttl, others_active)
end
commit()
local outcome = 'already_revoked'
if s.revoke_request_id == r.request_id then
  outcome = 'revoked'
end
return session_reply(outcome, s)
