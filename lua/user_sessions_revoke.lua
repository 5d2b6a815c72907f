#!lua
-- user_sessions_revoke, version: 8
-- Revokes one bounded batch of a user's active sessions, each with its snapshot and event.
-- The caller repeats until nothing remains, so Redis is never blocked for long. For a block, the
-- first batch also writes the user's blocked marker, so that a confirm already past the user
-- service cannot create a session after this revoke (the confirm script refuses while it exists).
-- KEYS[1] user_active_sessions
-- KEYS[2] stream
-- KEYS[3] user_sessions
-- KEYS[4] user_revoked_sessions
-- KEYS[5] revoke_batches: this revoke-all's replies, by batch number
-- KEYS[6] user_blocked: the user's blocked marker
-- KEYS[7..] session, gateway_session: of each planned session id (ARGV[12..]), in that order
-- ARGV[1] reason_code
-- ARGV[2] actor_type
-- ARGV[3] actor_id: '' when none
-- ARGV[4] batch_size
-- ARGV[5] revoked_retention_ms
-- ARGV[6] stream_maxlen
-- ARGV[7] request_id: unique per revoke-all (stored in each record as `revoke_request_id`)
-- ARGV[8] batch_number: 1, 2, ... within one revoke-all
-- ARGV[9] replay_memo_ms: how long KEYS[5] remembers this batch's reply
-- ARGV[10] block_marker_ttl_ms: 0 for a revoke-all; for a block, how long the marker lives
-- ARGV[11] event_format: 'snapshot' or 'compact'
-- ARGV[12..] planned_session_id: the batch the caller expects (the previous batch's `next`)
-- Plan, then commit: a batch holding an id the call did not plan answers {'need', id, ...}
-- (the batch it found) having written nothing; the caller calls again with those declared.
-- Reply: {'need', session_id, ...} | {'revoked', revoked in this batch, active sessions remaining,
--        next id, ...} (next: the next batch, to plan; none on a replay)
-- Replay: a batch that wrote stores its reply in KEYS[5]; a second run answers it again and
-- writes nothing (so revoked_count is exact).
-- Failure: ARGV and every record of the batch are read strictly, then `commit` preflights every
-- write (slot, ACL, type, stream id) before the first one. Every write goes to the key the id
-- of the index names (a record whose own id field disagrees is rewritten), and every id looked
-- at leaves the active index, so the caller's loop ends.
--!include common.lua: MAX_MS, MAX_STREAM_LEN, MAX_INT, now_ms, int, fail, strict_int, stored_int, arg_int, arg_str, arg_opt
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, write, commit_stream_check, commit
--!include session.lua: SESSION_FIELDS, session_load, session_revoke_apply
--!include user_index.lua: USER_INDEX_PRUNE_BATCH, user_index_read, user_index_settle
--!include projection.lua: projection_compact, projection_json, projection_write
--!include planned.lua: planned_keys, planned_all, planned_need

local r = {reason = arg_str(1), actor_type = arg_str(2), actor_id = arg_opt(3), request_id = arg_str(7)}
local batch_size = arg_int(4, 1, 50)
local retention = arg_int(5, 1, MAX_MS)
local maxlen = arg_int(6, 1, MAX_STREAM_LEN)
local batch_number = arg_int(8, 1, MAX_INT)
local memo_ms = arg_int(9, 1, MAX_MS)
local marker_ms = arg_int(10, 0, MAX_MS)
local compact = projection_compact(11)
local planned = planned_keys(SHAPE_PLANNED_KEY, SHAPE_PLANNED_ARG, SHAPE_PLANNED, 2)
local memo = read('HGET', KEYS[5], int(batch_number))
if memo then
  local revoked, remaining = string.match(memo, '^(%d+):(%d+)$')
  if not revoked then
    fail(KEYS[5] .. ' holds a malformed reply')
  end
  return {'revoked', tonumber(revoked), tonumber(remaining)}
end
local idx = {all = KEYS[3], active = KEYS[1], revoked = KEYS[4]}
local ids = read('ZRANGE', KEYS[1], 0, batch_size - 1)
local mark = marker_ms > 0 and batch_number == 1
if #ids == 0 and not mark then
  return {'revoked', 0, 0}
end
if not planned_all(planned, ids) then
  return planned_need(ids)
end
local batch, stale = {}, {}
for _, id in ipairs(ids) do
  local s = session_load(planned[id][1], id)
  if s and s.status == 'active' then
    table.insert(batch, s)
  else
    table.insert(stale, id)
  end
end
local remaining = read('ZCARD', KEYS[1]) - #ids
local now = now_ms()
local index = user_index_read(idx, now, remaining == 0)
-- The next batch, for the caller to plan: what stands after this one in the index.
local reply = {'revoked', #batch, remaining}
if remaining > 0 then
  for _, id in ipairs(read('ZRANGE', KEYS[1], #ids, #ids + batch_size - 1)) do
    reply[#reply + 1] = id
  end
end

if mark then
  write('SET', KEYS[6], int(now), 'PX', marker_ms)
end
for _, s in ipairs(batch) do
  local keys = planned[s.device_session_id]
  session_revoke_apply(keys[1], idx, s, now, r, retention)
  projection_write(keys[2], KEYS[2], maxlen, s, now, retention, compact)
end
if #stale > 0 then
  write('ZREM', KEYS[1], unpack(stale))
end
if #ids > 0 then
  user_index_settle(idx, index, now, retention, remaining > 0)
end
write('HSET', KEYS[5], int(batch_number), int(#batch) .. ':' .. int(remaining))
write('PEXPIRE', KEYS[5], memo_ms)
commit()
return reply
