-- session: reading a session hash and revoking it (write phase only).

-- The session hash as a table (nil when the key is missing), `version` as a number.
local function session_load(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then
    return nil
  end
  local s = {}
  for i = 1, #flat, 2 do
    s[flat[i]] = flat[i + 1]
  end
  s.version = tonumber(s.version)
  return s
end

-- Marks an active session revoked in `s` and in Redis: terminal status, version + 1, retention
-- TTL, removal from the user's active index. Callers check `s.status == 'active'` first.
local function session_revoke_apply(key, active_index_key, s, now, reason, actor_type, actor_id, retention_ms)
  s.status = 'revoked'
  s.version = s.version + 1
  s.revoked_at_ms = int(now)
  s.revoke_reason_code = reason
  redis.call('HSET', key, 'status', 'revoked', 'version', int(s.version), 'revoked_at_ms', s.revoked_at_ms,
    'revoke_reason_code', reason, 'revoke_actor_type', actor_type, 'revoke_actor_id', actor_id)
  redis.call('PEXPIRE', key, retention_ms)
  redis.call('ZREM', active_index_key, s.device_session_id)
end
