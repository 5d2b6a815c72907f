#!lua
-- challenge_confirm, version: 2
-- Turns a verified challenge into a device session, atomically with its indexes, the eviction of
-- the user's oldest sessions over the limit, and the gateway projection of every change.
-- KEYS[1] challenge  KEYS[2] new session  KEYS[3] user's session index  KEYS[4] user's active index
-- KEYS[5] gateway snapshot of the new session  KEYS[6] gateway event stream
-- ARGV[1] code_hash  ARGV[2] client_public_key  ARGV[3] user_id  ARGV[4] new device_session_id
-- ARGV[5] max attempts  ARGV[6] max active sessions per user  ARGV[7] idempotency window ms
-- ARGV[8] revoked-session retention ms  ARGV[9] stream MAXLEN  ARGV[10] session key prefix
-- ARGV[11] gateway snapshot key prefix (evicted sessions' keys are prefix .. id)  ARGV[12] challenge_id
-- ARGV[13] most sessions evicted by this call (bounds the script; later logins evict the rest)
-- Reply: {'created', device_session_id, created_at_ms} | {'confirmed', device_session_id}
--        | {'already_confirmed'} | {'not_found'} | {'expired'} | {'invalid_code'} | {'too_many_attempts'}
-- Replay-safe: a second run finds the challenge confirmed with its own id and answers 'confirmed'.
--!include common.lua
--!include session.lua
--!include projection.lua

local c = redis.call('HMGET', KEYS[1], 'status', 'code_hash', 'attempts', 'expires_at_ms',
  'client_public_key', 'device_session_id')
local status = c[1]
if not status then
  return {'not_found'}
end
if status == 'confirmed_pending_expire' then
  if c[2] ~= ARGV[1] then
    return {'invalid_code'}
  end
  if c[5] ~= ARGV[2] then
    return {'already_confirmed'}
  end
  return {'confirmed', c[6]}
end
local now = now_ms()
if now >= tonumber(c[4]) then
  return {'expired'}
end
if tonumber(c[3]) >= tonumber(ARGV[5]) then
  return {'too_many_attempts'}
end
if status ~= 'sent' or c[2] ~= ARGV[1] then
  return {'invalid_code'}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('ERR device session id already in use')
end
local stream_error = projection_check_stream(KEYS[6])
if stream_error then
  return stream_error
end
redis.call('ZCARD', KEYS[3]) -- fails here, before any write, if the index has the wrong type

-- Oldest active sessions over the limit (the new one counts), read before any write.
local evicted = {}
local excess = math.min(redis.call('ZCARD', KEYS[4]) + 1 - tonumber(ARGV[6]), tonumber(ARGV[13]))
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, excess - 1)) do
    local s = session_load(ARGV[10] .. id)
    if s and s.status == 'active' then
      table.insert(evicted, s)
    end
  end
end
-- Lazy pruning: the oldest few index entries whose (revoked, expired) session hash is gone.
local pruned = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, 7)) do
  if redis.call('EXISTS', ARGV[10] .. id) == 0 then
    table.insert(pruned, id)
  end
end

local retention = tonumber(ARGV[8])
for _, s in ipairs(evicted) do
  session_revoke_apply(ARGV[10] .. s.device_session_id, KEYS[4], s, now, 'session_limit_exceeded', 'system', '',
    retention)
  projection_write(ARGV[11] .. s.device_session_id, KEYS[6], ARGV[9], s, now, retention)
end
if #pruned > 0 then
  redis.call('ZREM', KEYS[3], unpack(pruned))
end

local id = ARGV[4]
local session = {
  device_session_id = id, user_id = ARGV[3], status = 'active', client_public_key = ARGV[2],
  version = 1, created_at_ms = int(now),
}
redis.call('HSET', KEYS[2], 'device_session_id', id, 'user_id', ARGV[3], 'status', 'active',
  'client_public_key', ARGV[2], 'created_at_ms', session.created_at_ms, 'version', 1,
  'challenge_id', ARGV[12])
redis.call('ZADD', KEYS[3], now, id)
redis.call('ZADD', KEYS[4], now, id)
redis.call('HSET', KEYS[1], 'status', 'confirmed_pending_expire', 'device_session_id', id,
  'client_public_key', ARGV[2], 'user_id', ARGV[3], 'confirmed_at_ms', session.created_at_ms)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
projection_write(KEYS[5], KEYS[6], ARGV[9], session, now, retention)
return {'created', id, session.created_at_ms}
