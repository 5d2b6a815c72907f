-- session: reading a session hash (read phase) and revoking it (write phase).

-- Fields every session hash holds; a record missing one fails the call before any write.
local SESSION_FIELDS = {'device_session_id', 'user_id', 'status', 'client_public_key', 'created_at_ms', 'version'}

-- The session hash as a table (nil when the key is missing), `version` as a number. A record
-- that is incomplete or malformed fails the call: building its snapshot would fail after writes.
local function session_load(key)
  local flat = redis.call('HGETALL', key)
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
  s.version = tonumber(s.version)
  if not s.version or not tonumber(s.created_at_ms) then
    fail('session record ' .. key .. ' has a non-numeric version or created_at_ms')
  end
  if s.status == 'revoked' then
    if not tonumber(s.revoked_at_ms) or not s.revoke_reason_code then
      fail('session record ' .. key .. ' is revoked without revoked_at_ms or revoke_reason_code')
    end
  elseif s.status ~= 'active' then
    fail('session record ' .. key .. ' has an unknown status')
  end
  return s
end

-- Marks an active session revoked in `s` and in Redis: terminal status, a version one higher
-- than the record's, the retention TTL, out of the user's active index and into the revoked
-- index scored by the record's expiry. `r` = {reason, actor_type, actor_id, request_id}.
-- Callers check `s.status == 'active'` and the index keys' types first.
local function session_revoke_apply(key, idx, s, now, r, retention_ms)
  s.status = 'revoked'
  s.version = s.version + 1
  s.revoked_at_ms = int(now)
  s.revoke_reason_code = r.reason
  redis.call('HSET', key, 'status', 'revoked', 'version', int(s.version), 'revoked_at_ms', s.revoked_at_ms,
    'revoke_reason_code', r.reason, 'revoke_actor_type', r.actor_type, 'revoke_actor_id', r.actor_id,
    'revoke_request_id', r.request_id)
  redis.call('PEXPIRE', key, retention_ms)
  redis.call('ZREM', idx.active, s.device_session_id)
  redis.call('ZADD', idx.revoked, now + retention_ms, s.device_session_id)
end
