#!lua
-- challenge_mark_delivery, version: 2
-- Records what happened to a pending challenge's code; on failure releases the resend window,
-- but only if that window is still the one this challenge opened.
-- KEYS[1] challenge
-- KEYS[2] resend_throttle
-- ARGV[1] challenge_id
-- ARGV[2] outcome: 'sent' | 'delivery_suppressed' | 'delivery_failed'
-- Derives: nothing
-- Reply: 'marked', 'unchanged' (not pending: marked otherwise before) or 'not_found'.
-- Replay: a second run finds the status it wrote and answers 'marked' again, writing nothing.
-- Failure: the outcome and the challenge key's type are checked before the first write; a
-- throttle key of another type is not this challenge's window and is left alone.
--!include common.lua: fail, arg_str

local outcome = arg_str(2)
if outcome ~= 'sent' and outcome ~= 'delivery_suppressed' and outcome ~= 'delivery_failed' then
  fail('ARGV[2] must be sent, delivery_suppressed or delivery_failed')
end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 'not_found'
end
if status == outcome then
  return 'marked'
end
if status ~= 'pending_delivery' then
  return 'unchanged'
end
local release = outcome == 'delivery_failed' and redis.pcall('GET', KEYS[2]) == ARGV[1]

redis.call('HSET', KEYS[1], 'status', outcome)
if release then
  redis.call('DEL', KEYS[2])
end
return 'marked'
