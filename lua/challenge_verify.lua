#!lua
-- challenge_verify, version: 2
-- Checks a confirm attempt before the user service is asked; counts failed attempts against the
-- challenge and against the address's fixed-window failure budget.
-- KEYS[1] challenge
-- ARGV[1] code_hash
-- ARGV[2] client_public_key
-- ARGV[3] max_attempts: per challenge
-- ARGV[4] failure_budget: failed confirms per address per window
-- ARGV[5] failure_window_ms
-- ARGV[6] confirm_failures_prefix: the counter is this prefix .. the challenge's email_hash
-- ARGV[7] attempt_id: unique per confirm request
-- Derives: confirm_failures (ARGV[6] .. email_hash)
-- Reply: {'ok', email} | {'confirmed', device_session_id} (identical retry) | {'already_confirmed'}
--        | {'not_found'} | {'expired'} | {'too_many_attempts'} | {'invalid_code'}
-- Replay: a counted attempt stores its verdict in the challenge (field `attempt:<attempt_id>`,
-- at most max_attempts of them); a repeated attempt id answers that verdict and counts nothing.
-- Failure: ARGV ranges, the challenge's fields and the counter's type and value are checked
-- before the first write.
--!include common.lua: MAX_MS, now_ms, int, fail, arg_int, arg_str

local max_attempts = arg_int(3, 1, 1000)
local budget = arg_int(4, 1, 1000000)
local window = arg_int(5, 1, MAX_MS)
local attempt_field = 'attempt:' .. arg_str(7)
local c = redis.call('HMGET', KEYS[1], 'status', 'code_hash', 'attempts', 'expires_at_ms', 'email_hash',
  'email', 'client_public_key', 'device_session_id', attempt_field)
local status, code_hash = c[1], c[2]
if not status then
  return {'not_found'}
end
if c[9] then
  return {c[9]}
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
local attempts, expires_at = tonumber(c[3]), tonumber(c[4])
if not attempts or not expires_at or not c[5] or not c[6] then
  fail('challenge record ' .. KEYS[1] .. ' is incomplete')
end
if now_ms() >= expires_at then
  return {'expired'}
end
if attempts >= max_attempts then
  return {'too_many_attempts'}
end
local failures_key = ARGV[6] .. c[5]
local failures = tonumber(redis.call('GET', failures_key) or '0')
if not failures then
  fail(failures_key .. ' does not hold a count')
end
if failures >= budget then
  return {'too_many_attempts'}
end
-- `pending_delivery` too: the mail may have gone out although marking it `sent` failed.
if (status == 'sent' or status == 'pending_delivery') and code_hash == ARGV[1] then
  return {'ok', c[6]}
end

-- A wrong code, or a challenge that never carried a deliverable code: one attempt spent.
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], attempt_field, 'invalid_code')
if redis.call('INCR', failures_key) == 1 then
  redis.call('PEXPIRE', failures_key, window)
end
return {'invalid_code'}
