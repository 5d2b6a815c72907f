#!lua
-- challenge_verify, version: 3
-- Checks a confirm attempt before the user service is asked; counts failed attempts against the
-- challenge and against the address's fixed-window failure budget. A confirmed challenge is no
-- guessing oracle: anything but the identical retry answers 'already_confirmed' whether or not
-- the code was right, and a wrong code there counts like any other.
-- KEYS[1] challenge
-- ARGV[1] code_hash: of the presented code under the current key
-- ARGV[2] code_hash_previous: under the previous key during a rotation, '' otherwise
-- ARGV[3] client_public_key
-- ARGV[4] max_attempts: per challenge
-- ARGV[5] failure_budget: failed confirms per address per window
-- ARGV[6] failure_window_ms
-- ARGV[7] confirm_failures_prefix: the counter is this prefix .. the challenge's email_hash
-- ARGV[8] attempt_id: unique per confirm request
-- Derives: confirm_failures (ARGV[7] .. email_hash)
-- Reply: {'ok', email} | {'confirmed', device_session_id} (identical retry) | {'already_confirmed'}
--        | {'not_found'} | {'expired'} | {'too_many_attempts'} | {'invalid_code'}
-- Replay: a counted attempt stores its verdict in the challenge (field `attempt:<attempt_id>`,
-- at most max_attempts of them); a repeated attempt id answers that verdict and counts nothing.
-- Failure: ARGV ranges, the challenge's fields and the counter's type and value are checked
-- before the first write.
--!include common.lua: MAX_MS, now_ms, int, fail, arg_int, arg_str

local max_attempts = arg_int(4, 1, 1000)
local budget = arg_int(5, 1, 1000000)
local window = arg_int(6, 1, MAX_MS)
local attempt_field = 'attempt:' .. arg_str(8)
local c = redis.call('HMGET', KEYS[1], 'status', 'code_hash', 'attempts', 'expires_at_ms', 'email_hash',
  'email', 'client_public_key', 'device_session_id', attempt_field)
local status, stored_hash = c[1], c[2]
if not status then
  return {'not_found'}
end
if c[9] then
  return {c[9]}
end
local attempts, expires_at = tonumber(c[3]), tonumber(c[4])
if not attempts or not expires_at or not stored_hash or not c[5] or not c[6] then
  fail('challenge record ' .. KEYS[1] .. ' is incomplete')
end
local failures_key = ARGV[7] .. c[5]
local failures = tonumber(redis.call('GET', failures_key) or '0')
if not failures then
  fail(failures_key .. ' does not hold a count')
end
-- A throttled challenge stores no hash: '' matches nothing.
local code_ok = stored_hash ~= '' and (stored_hash == arg_str(1) or stored_hash == ARGV[2])
local confirmed = status == 'confirmed_pending_expire'

if not confirmed and now_ms() >= expires_at then
  return {'expired'}
end
if attempts >= max_attempts or failures >= budget then
  return {'too_many_attempts'}
end
if confirmed and code_ok and c[7] == ARGV[3] then
  return {'confirmed', c[8]}
end
-- `pending_delivery` too: the mail may have gone out although marking it `sent` failed.
if not confirmed and code_ok and (status == 'sent' or status == 'pending_delivery') then
  return {'ok', c[6]}
end
local verdict = 'invalid_code'
if confirmed then
  verdict = 'already_confirmed'
  if code_ok then
    return {verdict}
  end
end

-- A wrong code, or a challenge that never carried a deliverable code: one attempt spent.
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], attempt_field, verdict)
if redis.call('INCR', failures_key) == 1 then
  redis.call('PEXPIRE', failures_key, window)
end
return {verdict}
