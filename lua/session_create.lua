#!lua
-- session_create, version: 5
-- (Partitioned layout, step 2 of a confirm.) Creates the device session of a verified challenge in
-- its user's partition, atomically with its indexes, the eviction of the user's oldest sessions
-- over the limit and the gateway projection of every change. The id is derived from the challenge,
-- so a retry, or a twin racing this one, finds the session instead of making a second. Refuses,
-- writing nothing, while a block of the user is in flight (the block's marker exists), and when
-- the verdict it acts on is older than the marker lives.
-- KEYS[1] session: the new session record
-- KEYS[2] user_sessions: the user's index of every session
-- KEYS[3] user_active_sessions
-- KEYS[4] gateway_session: the new session's snapshot
-- KEYS[5] stream: the partition's event stream
-- KEYS[6] user_revoked_sessions
-- KEYS[7] user_blocked: the marker a block writes before revoking
-- KEYS[8..] session, gateway_session: of each planned session id (ARGV[12..]), in that order
-- ARGV[1] client_public_key
-- ARGV[2] user_id
-- ARGV[3] device_session_id: derived from the challenge id
-- ARGV[4] challenge_id
-- ARGV[5] max_active_sessions: per user
-- ARGV[6] max_evictions: most sessions one call evicts
-- ARGV[7] revoked_retention_ms
-- ARGV[8] stream_maxlen
-- ARGV[9] verified_at_ms: when challenge_verify answered 'ok' (Redis time)
-- ARGV[10] max_verdict_age_ms: the blocked marker's life; an older verdict is refused
-- ARGV[11] event_format: 'snapshot' or 'compact'
-- ARGV[12..] planned_session_id: each session the caller expects the login to evict (or find a
--            ghost), with its record and snapshot at KEYS[8..] session, gateway_session
-- Plan, then commit: over the limit, the sessions the login would evict or prune that the call
-- did not plan are answered {'need', id, ...} before anything is written.
-- Reply: {'need', session_id, ...} | {'created', device_session_id, created_at_ms}
--        | {'other_key'} (the challenge's session
--        exists with another client key) | {'user_blocked'} | {'verdict_expired'}
--        | {'continue'} (ghosts or evictions beyond one call's bound were removed; call again)
-- Replay: a second run finds the session it made (same challenge, same key) and answers
-- {'created', ...} again, writing nothing.
-- Failure: ARGV, the existing record and every record the call reads are read strictly, then
-- `commit` preflights every write (slot, ACL, type, stream id) before the first one; a session of
-- the id made for another challenge fails.
--!include common.lua: MAX_MS, MAX_STREAM_LEN, MAX_INT, now_ms, int, fail, strict_int, stored_int, arg_int, arg_str
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, read_none, write, commit_stream_check, commit
--!include session.lua: SESSION_FIELDS, session_load, session_revoke_apply
--!include user_index.lua: USER_INDEX_PRUNE_BATCH, user_index_read, user_index_settle
--!include projection.lua: projection_compact, projection_json, projection_write
--!include planned.lua: planned_keys, planned_all, planned_need
--!include session_open.lua: SESSION_OPEN_GHOST_SCAN, session_open_plan, session_open_apply

local a = {client_public_key = arg_str(1), user_id = arg_str(2), id = arg_str(3),
  challenge_id = arg_str(4), max_active = arg_int(5, 1, 1000), max_evictions = arg_int(6, 1, 50),
  retention = arg_int(7, 1, MAX_MS), maxlen = arg_int(8, 1, MAX_STREAM_LEN),
  compact = projection_compact(11),
  planned = planned_keys(SHAPE_PLANNED_KEY, SHAPE_PLANNED_ARG, SHAPE_PLANNED, 2)}
local verified_at = arg_int(9, 0, MAX_INT)
local max_verdict_age = arg_int(10, 1, MAX_MS)
local k = {session = KEYS[1], all = KEYS[2], active = KEYS[3], gateway = KEYS[4], stream = KEYS[5],
  revoked = KEYS[6]}

local existing = session_load(KEYS[1])
if existing then
  if read('HGET', KEYS[1], 'challenge_id') ~= a.challenge_id or existing.user_id ~= a.user_id then
    fail('device session id ' .. a.id .. ' belongs to another challenge')
  end
  if existing.client_public_key ~= a.client_public_key then
    return {'other_key'}
  end
  return {'created', a.id, existing.created_at_ms}
end
-- No block in flight and no snapshot (the common case, one command), or a look at the marker.
if not read_none(KEYS[7], KEYS[4]) and read('EXISTS', KEYS[7]) == 1 then
  return {'user_blocked'}
end
local now = now_ms()
if now - verified_at > max_verdict_age then
  return {'verdict_expired'}
end
local plan = session_open_plan(k, a, now)
if plan.need then
  return planned_need(plan.need)
end

local session = session_open_apply(k, a, plan, now)
commit()
if not session then
  return {'continue'}
end
return {'created', a.id, session.created_at_ms}
