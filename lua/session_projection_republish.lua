#!lua
-- session_projection_republish, version: 6
-- Repairs a session's gateway projection from source of truth: rewrites the snapshot (and appends
-- its event) only when it is missing, unreadable or older; never turns a revoked view active.
-- KEYS[1] session
-- KEYS[2] gateway_session: its snapshot
-- KEYS[3] stream
-- ARGV[1] stream_maxlen
-- ARGV[2] revoked_retention_ms: the snapshot's TTL when the revoked record has none
-- ARGV[3] request_id: unique per republish request
-- ARGV[4] event_format: 'snapshot' or 'compact'
-- Reply: {'repaired' | 'current', version} | {'not_found'}
-- Replay: a repair stores request_id in the record (`projection_repaired_by`); a second run
-- answers 'repaired' again and writes nothing.
-- Failure: ARGV and the record's fields are read strictly, then `commit` preflights every write
-- (slot, ACL, type, stream id) before the first one.
--!include common.lua: MAX_MS, MAX_STREAM_LEN, MAX_INT, now_ms, int, fail, strict_int, stored_int, arg_int, arg_str
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, get_any_type, write, commit_stream_check, commit
--!include session.lua: SESSION_FIELDS, session_load
--!include projection.lua: projection_compact, projection_json, projection_needed, projection_write

local maxlen = arg_int(1, 1, MAX_STREAM_LEN)
local retention = arg_int(2, 1, MAX_MS)
local request_id = arg_str(3)
local compact = projection_compact(4)
local s = session_load(KEYS[1])
if not s then
  return {'not_found'}
end
if s.projection_repaired_by == request_id then
  return {'repaired', s.version}
end
if not projection_needed(KEYS[2], s) then
  return {'current', s.version}
end
local ttl = read('PTTL', KEYS[1])
if ttl <= 0 then
  ttl = retention
end
projection_write(KEYS[2], KEYS[3], maxlen, s, now_ms(), ttl, compact)
write('HSET', KEYS[1], 'projection_repaired_by', request_id)
commit()
return {'repaired', s.version}
