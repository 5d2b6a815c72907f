#!lua
-- challenge_verify, version: 4
-- Admits a confirm (per-client fixed window), then checks it before the user service is asked;
-- counts failed attempts against the challenge and against the address's fixed-window failure
-- budget. A confirmed challenge is no
-- guessing oracle: anything but the identical retry answers 'already_confirmed' whether or not
-- the code was right, and a wrong code there counts like any other.
-- KEYS[1] challenge
-- KEYS[2] rate_confirm_client: the client's confirm window
-- ARGV[1] code_hash: of the presented code under the current key
-- ARGV[2] code_hash_previous: under the previous key during a rotation, '' otherwise
-- ARGV[3] client_public_key
-- ARGV[4] max_attempts: per challenge
-- ARGV[5] failure_budget: failed confirms per address per window
-- ARGV[6] failure_window_ms
-- ARGV[7] confirm_failures_prefix: the counter is this prefix .. the challenge's email_hash
-- ARGV[8] attempt_id: unique per confirm request
-- ARGV[9] client_limit: confirms per client per window, 0 = off
-- ARGV[10] client_window_ms
-- Derives: confirm_failures (ARGV[7] .. email_hash; a throttled challenge has none)
-- Reply: {'ok', email} | {'confirmed', device_session_id} (identical retry) | {'already_confirmed'}
--        | {'not_found'} | {'expired'} | {'too_many_attempts'} | {'invalid_code'}
--        | {'rate_limited', retry_after_ms}
-- Replay: a counted attempt stores its verdict in the challenge (field `attempt:<attempt_id>`,
-- at most max_attempts of them); a repeated attempt id answers that verdict and counts nothing;
-- the client's counter remembers the attempt id it counted last, so a resend counts once.
-- Failure: ARGV ranges, the challenge's fields and the counter's type and value are checked
-- before the first write.
--!include common.lua: MAX_MS, now_ms, int, fail, arg_int, arg_str, key_type_is
--!include rate_limit.lua: rate_check, rate_count

local max_attempts = arg_int(4, 1, 1000)
local budget = arg_int(5, 1, 1000000)
local window = arg_int(6, 1, MAX_MS)
local attempt_id = arg_str(8)
local attempt_field = 'attempt:' .. attempt_id
local client_limit = arg_int(9, 0, 1000000000)
local client_window = arg_int(10, 1, MAX_MS)
local client = rate_check(KEYS[2], client_limit, client_window, attempt_id)
if client and client[1] then
  return {'rate_limited', client[1]}
end
local c = redis.call('HMGET', KEYS[1], 'status', 'code_hash', 'attempts', 'expires_at_ms', 'email_hash',
  'email', 'client_public_key', 'device_session_id', attempt_field)
local status, stored_hash = c[1], c[2] or ''
if c[9] then
  return {c[9]}
end
if not status then
  rate_count(KEYS[2], client, client_window, attempt_id)
  return {'not_found'}
end
-- A throttled challenge keeps no attempts until the first one, and no address: its guesses
-- (which can never succeed) count against the challenge only.
local attempts, expires_at = tonumber(c[3] or '0'), tonumber(c[4])
if not attempts or not expires_at or (status ~= 'delivery_throttled' and not c[5]) then
  fail('challenge record ' .. KEYS[1] .. ' is incomplete')
end
local failures_key = c[5] and ARGV[7] .. c[5]
local failures = 0
if failures_key then
  failures = tonumber(redis.call('GET', failures_key) or '0')
  if not failures then
    fail(failures_key .. ' does not hold a count')
  end
end
-- A throttled challenge stores no hash: '' matches nothing.
local code_ok = stored_hash ~= '' and (stored_hash == arg_str(1) or stored_hash == ARGV[2])
local confirmed = status == 'confirmed_pending_expire'
local deliverable = status == 'sent' or status == 'pending_delivery'
if not confirmed and deliverable and code_ok and not c[6] then
  fail('challenge record ' .. KEYS[1] .. ' is incomplete')
end

-- Outcomes that spend nothing but the client's admission.
local verdict
if not confirmed and now_ms() >= expires_at then
  verdict = {'expired'}
elseif attempts >= max_attempts or failures >= budget then
  verdict = {'too_many_attempts'}
elseif confirmed and code_ok and c[7] == ARGV[3] then
  verdict = {'confirmed', c[8]}
elseif not confirmed and code_ok and deliverable then
  -- `pending_delivery` too: the mail may have gone out although marking it `sent` failed.
  verdict = {'ok', c[6]}
elseif confirmed and code_ok then
  verdict = {'already_confirmed'}
end
if verdict then
  rate_count(KEYS[2], client, client_window, attempt_id)
  return verdict
end
local word = 'invalid_code'
if confirmed then
  word = 'already_confirmed'
end

-- A wrong code, or a challenge that never carried a deliverable code: one attempt spent.
rate_count(KEYS[2], client, client_window, attempt_id)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], attempt_field, word)
if failures_key and redis.call('INCR', failures_key) == 1 then
  redis.call('PEXPIRE', failures_key, window)
end
return {word}
