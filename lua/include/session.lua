-- session: reading a session hash (read phase) and revoking it (queued writes).

-- Fields every session hash holds; a record missing one fails the call before any write.
local SESSION_FIELDS = {'device_session_id', 'user_id', 'status', 'client_public_key', 'created_at_ms', 'version'}

-- The fields a script answers with, in this order, those the record has.
local SESSION_REPLY_FIELDS = {'device_session_id', 'user_id', 'status', 'client_public_key', 'created_at_ms',
  'version', 'challenge_id', 'revoked_at_ms', 'revoke_reason_code', 'revoke_actor_type', 'revoke_actor_id',
  'revoke_request_id'}

-- The session hash at `key` as a table (nil when the key is missing), `version` as a number.
-- `id`, when the caller knows it from an index, is the session's id whatever the record's own
-- field says (the key is what every write goes to). A record that is incomplete or malformed
-- fails the call: building its snapshot would fail after writes.
local function session_load(key, id)
  local flat = read('HGETALL', key)
  if #flat == 0 then
    return nil
  end
  local s = {}
  for i = 1, #flat, 2 do
    s[flat[i]] = flat[i + 1]
  end
  for _, field in ipairs(SESSION_FIELDS) do
    if not s[field] or s[field] == '' then
      fail('session record ' .. key .. ' has no ' .. field)
    end
  end
  if id then
    s.device_session_id = id
  end
  s.version = stored_int(s.version, key .. ' version')
  stored_int(s.created_at_ms, key .. ' created_at_ms')
  if s.version >= MAX_INT then
    fail('session record ' .. key .. ' has no version left')
  end
  if s.status == 'revoked' then
    stored_int(s.revoked_at_ms, key .. ' revoked_at_ms', -1)
    if not s.revoked_at_ms or not s.revoke_reason_code then
      fail('session record ' .. key .. ' is revoked without revoked_at_ms or revoke_reason_code')
    end
  elseif s.status ~= 'active' then
    fail('session record ' .. key .. ' has an unknown status')
  end
  return s
end

-- `s` as a flat `field value ...` reply, fields in SESSION_REPLY_FIELDS order.
local function session_reply(word, s)
  local reply = {word}
  for _, field in ipairs(SESSION_REPLY_FIELDS) do
    local v = s[field]
    if v then
      if field == 'version' then
        v = int(v)
      end
      reply[#reply + 1] = field
      reply[#reply + 1] = v
    end
  end
  return reply
end

-- Marks an active session revoked in `s` and queues the same in Redis: terminal status, a version
-- one higher than the record's, the retention TTL, out of the user's active index and into the
-- revoked index scored by the record's expiry. `r` = {reason, actor_type, actor_id, request_id}.
-- The record's id field is rewritten with the id its key carries. Callers check
-- `s.status == 'active'` first.
local function session_revoke_apply(key, idx, s, now, r, retention_ms)
  s.status = 'revoked'
  s.version = s.version + 1
  s.revoked_at_ms = int(now)
  s.revoke_reason_code = r.reason
  s.revoke_actor_type = r.actor_type
  s.revoke_actor_id = r.actor_id
  s.revoke_request_id = r.request_id
  write('HSET', key, 'device_session_id', s.device_session_id, 'status', 'revoked', 'version', int(s.version),
    'revoked_at_ms', s.revoked_at_ms, 'revoke_reason_code', r.reason, 'revoke_actor_type', r.actor_type,
    'revoke_actor_id', r.actor_id, 'revoke_request_id', r.request_id)
  write('PEXPIRE', key, retention_ms)
  write('ZREM', idx.active, s.device_session_id)
  write('ZADD', idx.revoked, now + retention_ms, s.device_session_id)
end
