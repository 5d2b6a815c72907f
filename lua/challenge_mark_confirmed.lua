#!lua
-- challenge_mark_confirmed, version: 5
-- (Partitioned layout, the last step of a confirm, after challenge_claim and session_create.)
-- Records on the challenge the session created by the session step, so that an identical retry
-- is answered from the challenge and any other confirm is refused.
-- KEYS[1] challenge
-- ARGV[1] device_session_id
-- ARGV[2] client_public_key
-- ARGV[3] user_id
-- ARGV[4] confirmed_at_ms: the session's created_at_ms
-- ARGV[5] idempotency_window_ms: how long the confirmed challenge stays
-- ARGV[6] via: the throttled challenge the code was presented through, '' when presented here
--         (recorded as `confirmed_via`: a holder of another challenge of the window learns nothing)
-- Reply: 'marked' | 'other_session' (confirmed with, or claimed for, another session: left as it
--        is) | 'not_found'
-- Replay: a second run finds the challenge confirmed with this session and answers 'marked',
-- writing nothing.
-- Failure: ARGV and the challenge's status are checked, then `commit` preflights every write.
--!include common.lua: MAX_MS, MAX_INT, int, fail, strict_int, arg_int, arg_str, arg_opt
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, write, commit_stream_check, commit

local id = arg_str(1)
local client_public_key, user_id = arg_str(2), arg_str(3)
local confirmed_at = arg_int(4, 0, MAX_INT)
local idempotency = arg_int(5, 1, MAX_MS)
local via = arg_opt(6)
local c = read('HMGET', KEYS[1], 'status', 'device_session_id', 'claimed_by', 'claimed_for')
if not c[1] then
  return 'not_found'
end
if c[1] == 'confirmed_pending_expire' then
  if c[2] == id then
    return 'marked'
  end
  return 'other_session'
end
if c[3] and (c[3] ~= id or c[4] ~= user_id) then
  return 'other_session'
end
-- Verified while `sent` or `pending_delivery`; a delivery outcome marked since changes nothing.
-- A throttled challenge holds no code and can never have verified.
if c[1] == 'delivery_throttled' then
  fail('challenge ' .. KEYS[1] .. ' is throttled: it never verified')
end

write('HSET', KEYS[1], 'status', 'confirmed_pending_expire', 'device_session_id', id,
  'client_public_key', client_public_key, 'user_id', user_id, 'confirmed_at_ms', int(confirmed_at))
if via ~= '' then
  write('HSET', KEYS[1], 'confirmed_via', via)
end
write('PEXPIRE', KEYS[1], idempotency)
commit()
return 'marked'
