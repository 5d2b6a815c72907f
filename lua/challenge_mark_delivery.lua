#!lua
-- challenge_mark_delivery, version: 1
-- Records what happened to a pending challenge's code; on failure releases the resend window,
-- but only if that window is still the one this challenge opened.
-- KEYS[1] challenge key          KEYS[2] resend-throttle key of the address
-- ARGV[1] challenge_id  ARGV[2] outcome: 'sent' | 'delivery_suppressed' | 'delivery_failed'
-- Reply: 'marked', 'unchanged' (not pending: already marked, e.g. a replay) or 'not_found'.

local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 'not_found'
end
if status ~= 'pending_delivery' then
  return 'unchanged'
end
local release = ARGV[2] == 'delivery_failed' and redis.call('GET', KEYS[2]) == ARGV[1]

redis.call('HSET', KEYS[1], 'status', ARGV[2])
if release then
  redis.call('DEL', KEYS[2])
end
return 'marked'
