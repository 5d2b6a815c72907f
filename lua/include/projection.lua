-- projection: the gateway view of a session, one snapshot key plus one stream event per write.
-- Every script that writes a snapshot uses these: projection_compact to read its `event_format`
-- argument, projection_needed in its read phase, projection_write to queue the writes. A
-- snapshot key of another type needs no check: `SET` replaces it (and `commit` touches it before
-- any write all the same).

-- ARGV[i], the event format: false for 'snapshot' (every field of the contract's snapshot
-- event), true for 'compact' (device_session_id, version and status only); anything else fails.
local function projection_compact(i)
  local format = arg_str(i)
  if format ~= 'snapshot' and format ~= 'compact' then
    fail('argument ' .. i .. ' (event_format) must be snapshot or compact')
  end
  return format == 'compact'
end

-- The snapshot JSON of `s`, fields in contract order.
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

-- True when the stored snapshot must be written to show `s`: missing, of another type,
-- unreadable, or older. A revoked view is terminal and is checked first: no active `s` ever
-- replaces it, whatever else the stored view holds.
local function projection_needed(snapshot_key, s)
  local stored = get_any_type(snapshot_key)
  if type(stored) ~= 'string' then
    return true
  end
  local ok, view = pcall(cjson.decode, stored)
  if not ok or type(view) ~= 'table' then
    return true
  end
  if view.status == 'revoked' and s.status ~= 'revoked' then
    return false
  end
  return type(view.version) ~= 'number' or view.version < s.version
end

-- Queues the snapshot (no TTL while active, `retention_ms` once revoked) and its event, in the
-- compact format when `compact`.
local function projection_write(snapshot_key, stream_key, maxlen, s, now, retention_ms, compact)
  local json = projection_json(s)
  if s.status == 'revoked' then
    write('SET', snapshot_key, json, 'PX', retention_ms)
  else
    write('SET', snapshot_key, json)
  end
  if compact then
    write('XADD', stream_key, 'MAXLEN', '~', maxlen, '*',
      'device_session_id', s.device_session_id,
      'version', int(s.version),
      'status', s.status)
    return
  end
  write('XADD', stream_key, 'MAXLEN', '~', maxlen, '*',
    'event_type', 'session_snapshot',
    'device_session_id', s.device_session_id,
    'user_id', s.user_id,
    'status', s.status,
    'version', int(s.version),
    'snapshot', json,
    'occurred_at_ms', int(now))
end
