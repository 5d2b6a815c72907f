#!lua
-- challenge_claim, version: 3
-- (Partitioned layout, step 1 of a confirm, after the user service answered.) Claims the
-- challenge for the session this confirm will create, before the session exists: one challenge,
-- at most one session, whatever the user service answers. A confirm whose session id differs
-- from the claim (another user id for the same address, so another partition) is refused before
-- it creates anything; the claimant's own retry finds its claim and goes on.
-- KEYS[1] challenge
-- ARGV[1] device_session_id: the session the confirm will create (derived from the challenge,
--         in the user's partition)
-- ARGV[2] user_id: the user the user service answered with
-- Reply: 'claimed' | 'other_session' (claimed or confirmed for another session or user)
--        | 'not_found'
-- Replay: a second run finds its own claim (or the challenge confirmed with its session) and
-- answers 'claimed' again, writing nothing.
-- Failure: ARGV and the challenge's status are checked, then `commit` preflights the write.
--!include common.lua: fail, arg_str
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, write, commit_stream_check, commit

local id, user_id = arg_str(1), arg_str(2)
local c = read('HMGET', KEYS[1], 'status', 'device_session_id', 'user_id', 'claimed_by', 'claimed_for')
if not c[1] then
  return 'not_found'
end
local holder, holder_user = c[4], c[5]
if c[1] == 'confirmed_pending_expire' then
  holder, holder_user = c[2], c[3]
end
if holder then
  if holder == id and holder_user == user_id then
    return 'claimed'
  end
  return 'other_session'
end
-- A throttled challenge holds no code and can never have verified.
if c[1] == 'delivery_throttled' then
  fail('challenge ' .. KEYS[1] .. ' is throttled: it never verified')
end

write('HSET', KEYS[1], 'claimed_by', id, 'claimed_for', user_id)
commit()
return 'claimed'
