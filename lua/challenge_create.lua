#!lua
-- challenge_create, version: 1
-- Creates a login challenge and opens the per-address resend window, atomically.
-- KEYS[1] challenge key          KEYS[2] resend-throttle key of the address
-- ARGV[1] challenge_id  ARGV[2] normalized e-mail  ARGV[3] sha256 hex of the e-mail
-- ARGV[4] code_hash  ARGV[5] locale ('' when none)  ARGV[6] challenge TTL ms
-- ARGV[7] expired-challenge retention ms  ARGV[8] resend cooldown ms
-- Reply: the challenge status: 'pending_delivery' (send the code) or 'delivery_throttled'.
-- Replay-safe: a second run with the same ARGV finds its challenge and returns its status.
--!include common.lua

local existing = redis.call('HGET', KEYS[1], 'status')
if existing then
  return existing
end
local throttled = redis.call('EXISTS', KEYS[2]) == 1
local now = now_ms()

local status = 'pending_delivery'
local code_hash = ARGV[4]
if throttled then
  status = 'delivery_throttled'
  code_hash = ''
else
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[8], 'NX')
end
redis.call('HSET', KEYS[1], 'status', status, 'email', ARGV[2], 'email_hash', ARGV[3],
  'code_hash', code_hash, 'attempts', 0, 'created_at_ms', int(now),
  'expires_at_ms', int(now + tonumber(ARGV[6])), 'locale', ARGV[5])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]) + tonumber(ARGV[7]))
return status
