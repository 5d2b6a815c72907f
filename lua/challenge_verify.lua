#!lua
-- challenge_verify, version: 1
-- Checks a confirm attempt before the user service is asked; counts failed attempts against the
-- challenge and against the address's fixed-window failure budget.
-- KEYS[1] challenge key
-- ARGV[1] code_hash  ARGV[2] client_public_key  ARGV[3] max attempts per challenge
-- ARGV[4] failure budget per address  ARGV[5] failure window ms
-- ARGV[6] confirm-failures key prefix (the counter is prefix .. email_hash, same hash tag)
-- Reply: {'ok', email} | {'confirmed', device_session_id} (identical retry) | {'already_confirmed'}
--        | {'not_found'} | {'expired'} | {'too_many_attempts'} | {'invalid_code'}
--!include common.lua

local c = redis.call('HMGET', KEYS[1], 'status', 'code_hash', 'attempts', 'expires_at_ms', 'email_hash',
  'email', 'client_public_key', 'device_session_id')
local status, code_hash, attempts, expires_at = c[1], c[2], tonumber(c[3]), tonumber(c[4])
if not status then
  return {'not_found'}
end
if status == 'confirmed_pending_expire' then
  if code_hash ~= ARGV[1] then
    return {'invalid_code'}
  end
  if c[7] ~= ARGV[2] then
    return {'already_confirmed'}
  end
  return {'confirmed', c[8]}
end
if now_ms() >= expires_at then
  return {'expired'}
end
if attempts >= tonumber(ARGV[3]) then
  return {'too_many_attempts'}
end
local failures_key = ARGV[6] .. c[5]
local failures = tonumber(redis.call('GET', failures_key) or '0')
if failures >= tonumber(ARGV[4]) then
  return {'too_many_attempts'}
end
if status == 'sent' and code_hash == ARGV[1] then
  return {'ok', c[6]}
end

-- A wrong code, or a challenge that never carried a deliverable code: one attempt spent.
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if redis.call('INCR', failures_key) == 1 then
  redis.call('PEXPIRE', failures_key, ARGV[5])
end
return {'invalid_code'}
