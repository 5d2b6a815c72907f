-- projection: the gateway view of a session, one snapshot key plus one stream event per write.
-- Every script that writes a snapshot uses these functions: projection_needed and
-- projection_check_stream in its read phase, projection_write in its write phase.

local function projection_json(s)
  local json = '{"device_session_id":' .. cjson.encode(s.device_session_id)
    .. ',"user_id":' .. cjson.encode(s.user_id)
    .. ',"status":' .. cjson.encode(s.status)
    .. ',"client_public_key":' .. cjson.encode(s.client_public_key)
    .. ',"version":' .. int(s.version)
    .. ',"created_at_ms":' .. s.created_at_ms
  if s.status == 'revoked' then
    json = json .. ',"revoked_at_ms":' .. s.revoked_at_ms
      .. ',"revoke_reason_code":' .. cjson.encode(s.revoke_reason_code)
  end
  return json .. '}'
end

-- True when the stored snapshot must be written to show `s`: missing, unreadable, or older.
-- Never true for an active view over a revoked one (revoked is terminal), never lowers a version.
local function projection_needed(snapshot_key, s)
  local stored = redis.call('GET', snapshot_key)
  if not stored then
    return true
  end
  local ok, view = pcall(cjson.decode, stored)
  if not ok or type(view) ~= 'table' or type(view.version) ~= 'number' then
    return true
  end
  if view.status == 'revoked' and s.status ~= 'revoked' then
    return false
  end
  return view.version < s.version
end

-- An error reply when the stream key holds another type: XADD would fail after other writes.
local function projection_check_stream(stream_key)
  local kind = redis.call('TYPE', stream_key)['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE gateway event stream key holds a ' .. kind)
  end
  return nil
end

-- Writes the snapshot (no TTL while active, `retention_ms` once revoked) and appends its event.
local function projection_write(snapshot_key, stream_key, maxlen, s, now, retention_ms)
  local json = projection_json(s)
  if s.status == 'revoked' then
    redis.call('SET', snapshot_key, json, 'PX', retention_ms)
  else
    redis.call('SET', snapshot_key, json)
  end
  redis.call('XADD', stream_key, 'MAXLEN', '~', maxlen, '*',
    'event_type', 'session_snapshot',
    'device_session_id', s.device_session_id,
    'user_id', s.user_id,
    'status', s.status,
    'version', int(s.version),
    'snapshot', json,
    'occurred_at_ms', int(now))
end
