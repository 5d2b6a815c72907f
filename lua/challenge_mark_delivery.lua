#!lua
-- challenge_mark_delivery, version: 5
-- Records what happened to a pending challenge's code; on failure releases the resend window,
-- but only if that window is still the one this challenge opened.
-- KEYS[1] challenge
-- KEYS[2] resend_throttle
-- ARGV[1] challenge_id
-- ARGV[2] outcome: 'sent' | 'delivery_suppressed' | 'delivery_failed'
-- Reply: 'marked', 'unchanged' (not pending: marked otherwise before) or 'not_found'.
-- Replay: a second run finds the status it wrote and answers 'marked' again, writing nothing.
-- Failure: the outcome is checked, then `commit` preflights every write (slot, ACL, type). A
-- throttle key of another type is not this challenge's window and is left alone.
--!include common.lua: fail, arg_str
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, get_any_type, write, commit_stream_check, commit

local id = arg_str(1)
local outcome = arg_str(2)
if outcome ~= 'sent' and outcome ~= 'delivery_suppressed' and outcome ~= 'delivery_failed' then
  fail('the outcome must be sent, delivery_suppressed or delivery_failed')
end
local status = read('HGET', KEYS[1], 'status')
if not status then
  return 'not_found'
end
if status == outcome then
  return 'marked'
end
if status ~= 'pending_delivery' then
  return 'unchanged'
end
local release = outcome == 'delivery_failed' and get_any_type(KEYS[2]) == id

write('HSET', KEYS[1], 'status', outcome)
if release then
  write('DEL', KEYS[2])
end
commit()
return 'marked'
