#!lua
-- challenge_verify, version: 10
-- Admits a confirm (per-client fixed window) when the call carries the admission, then checks it
-- before the user service is asked; counts failed attempts against the challenge and against the
-- address's fixed-window failure budget. A confirmed challenge is no guessing oracle: anything but
-- the identical retry answers 'already_confirmed' whether or not the code was right, and a wrong
-- code there counts like any other. A throttled challenge names the challenge that opened its
-- window ('window'): the caller hashes the code under that id and calls again there with the same
-- attempt id, so the code the address's owner received works, and attempts, budget and confirmation
-- are that challenge's. The second call names the throttled challenge the code was presented
-- through ('via') and its expiry: until then the opening challenge is judged as an open challenge
-- of that age would be (the follower answers as an opener of its age), and once it was confirmed
-- through another challenge of the window, as if it were still open.
-- KEYS[1] challenge
-- KEYS[2] rate_confirm_client?: the client's confirm window
-- KEYS[3..] confirm_failures: the address's failure counter, at most one (the caller declares
--           it when it knows the challenge's address: from the id, or from a `need` reply)
-- ARGV[1] code_hash: of the presented code under the current key
-- ARGV[2] code_hash_previous: under the previous key during a rotation, '' otherwise
-- ARGV[3] client_public_key
-- ARGV[4] max_attempts: per challenge
-- ARGV[5] failure_budget: failed confirms per address per window
-- ARGV[6] failure_window_ms
-- ARGV[7] attempt_id: unique per confirm request
-- ARGV[8] via: the throttled challenge the code was presented through, '' when presented here
-- ARGV[9] via_expires_at_ms: that challenge's expiry, '' when presented here
-- ARGV[10] client_limit?: confirms per client per window, 0 = off
-- ARGV[11] client_window_ms?
-- ARGV[12..] email_hash: the address whose counter KEYS[3..] is
-- Optional (`?`): the admission, all of it or none. The single-tag layout passes it; the
-- partitioned layout admits the client in its own partition first (confirm_admit) and passes none.
-- Plan, then commit: a challenge whose address's counter the call did not declare (none, or
-- another address's) answers {'need', email_hash} before anything is counted or written.
-- Reply: {'need', email_hash} | {'ok', email, verified_at_ms} | {'confirmed', device_session_id} (identical retry)
--        | {'window', challenge_id, expires_at_ms} (throttled: confirm against the window's
--        opening challenge, via this one, which expires then)
--        | {'already_confirmed'} | {'not_found'} | {'expired'} | {'too_many_attempts'}
--        | {'invalid_code'} | {'rate_limited', retry_after_ms}
-- Replay: a counted attempt stores its verdict in the challenge (field `attempt:<attempt_id>`,
-- at most max_attempts of them); a repeated attempt id answers that verdict before anything is
-- counted; the client's counter keeps the attempt ids it counted in its window.
-- Failure: ARGV, the challenge's fields and the counters are read strictly, then `commit`
-- preflights every write (slot, ACL, type) before the first one.
--!include common.lua: MAX_MS, MAX_INT, now_ms, int, fail, strict_int, stored_int, arg_int, arg_str, arg_opt
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, write, commit_stream_check, commit
--!include rate_limit.lua: rate_check, rate_count
--!include challenge.lua: challenge_via, challenge_code_ok, challenge_decide
--!include planned.lua: planned_keys

local code_hash, code_hash_previous, client_key = arg_str(1), arg_opt(2), arg_str(3)
local max_attempts = arg_int(4, 1, 1000)
local budget = arg_int(5, 1, 1000000)
local window = arg_int(6, 1, MAX_MS)
local attempt_id = arg_str(7)
local attempt_field = 'attempt:' .. attempt_id
local via, via_expires_at = challenge_via(8)
local admits = SHAPE_OPTIONAL
local client_limit, client_window
if admits then
  client_limit, client_window = arg_int(10, 0, 1000000000), arg_int(11, 1, MAX_MS)
end
if SHAPE_PLANNED > 1 then
  fail('at most one confirm_failures key')
end
local counters = planned_keys(SHAPE_PLANNED_KEY, SHAPE_PLANNED_ARG, SHAPE_PLANNED, 1)
local c = read('HMGET', KEYS[1], 'status', 'code_hash', 'attempts', 'expires_at_ms', 'email_hash',
  'email', 'client_public_key', 'device_session_id', attempt_field, 'window_of', 'confirmed_via')
local status = c[1]
if c[9] then
  return {c[9]}
end
-- Without the admission `client` stays nil, and each rate_count below counts nothing.
local client
if admits then
  client = rate_check(KEYS[2], client_limit, client_window, attempt_id)
  if client and client.retry_after then
    return {'rate_limited', client.retry_after}
  end
end
if not status then
  rate_count(KEYS[2], client, client_window, attempt_id)
  commit()
  return {'not_found'}
end
local attempts = stored_int(c[3], KEYS[1] .. ' attempts', 0)
local expires_at = stored_int(c[4], KEYS[1] .. ' expires_at_ms')
if not expires_at or (status ~= 'delivery_throttled' and not c[5]) then
  fail('challenge record ' .. KEYS[1] .. ' is incomplete')
end
if status == 'delivery_throttled' and c[10] then
  local verdict = {'window', c[10], expires_at}
  if now_ms() >= expires_at then
    verdict = {'expired'}
  end
  rate_count(KEYS[2], client, client_window, attempt_id)
  commit()
  return verdict
end
-- A throttled challenge whose window named no challenge (its key held another type) keeps no
-- attempts until the first one, and no address: its guesses (which can never succeed) count
-- against the challenge only. Any other challenge's address counter must be declared.
local failures_key = c[5] and counters[c[5]] and counters[c[5]][1]
if c[5] and not failures_key then
  return {'need', c[5]}
end
local failures = 0
if failures_key then
  failures = stored_int(read('GET', failures_key), failures_key, 0)
end
local code_ok = challenge_code_ok(c[2], code_hash, code_hash_previous)
local deliverable = status == 'sent' or status == 'pending_delivery'
if deliverable and code_ok and not c[6] then
  fail('challenge record ' .. KEYS[1] .. ' is incomplete')
end

local now = now_ms()
local word, spends = challenge_decide(status, code_ok, c[7] == client_key,
  now >= (via_expires_at or expires_at), attempts >= max_attempts or failures >= budget,
  (c[11] or '') ~= via)
rate_count(KEYS[2], client, client_window, attempt_id)
if not spends then
  -- Outcomes that spend nothing but the client's admission.
  commit()
  if word == 'confirmed' then
    return {word, c[8]}
  elseif word == 'ok' then
    return {word, c[6], now}
  end
  return {word}
end

-- A wrong code, or a challenge that never carried a deliverable code: one attempt spent.
write('HSET', KEYS[1], 'attempts', int(attempts + 1), attempt_field, word)
if failures_key then
  if failures == 0 then
    write('SET', failures_key, '1', 'PX', window)
  else
    write('SET', failures_key, int(failures + 1), 'KEEPTTL')
  end
end
commit()
return {word}
