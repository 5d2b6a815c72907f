#!lua
-- challenge_create, version: 2
-- Creates a login challenge and opens the per-address resend window, atomically.
-- KEYS[1] challenge: the new challenge record
-- KEYS[2] resend_throttle: the address's resend window (holds the challenge id that opened it)
-- ARGV[1] challenge_id
-- ARGV[2] email: normalized address
-- ARGV[3] email_hash: sha256 hex of the address
-- ARGV[4] code_hash
-- ARGV[5] locale: '' when none
-- ARGV[6] challenge_ttl_ms
-- ARGV[7] expired_retention_ms: how long an expired challenge stays observable
-- ARGV[8] resend_cooldown_ms
-- Derives: nothing
-- Reply: the challenge status: 'pending_delivery' (send the code) or 'delivery_throttled'.
-- Replay: a second run finds its challenge and returns its status, writing nothing.
-- Failure: every check (ARGV ranges, the challenge key's type) precedes the first write. A
-- throttle key of another type counts as an open window (`SET NX` leaves it alone).
--!include common.lua: MAX_MS, now_ms, int, fail, arg_int, arg_str

arg_str(1)
local ttl = arg_int(6, 1, MAX_MS)
local retention = arg_int(7, 0, MAX_MS)
local cooldown = arg_int(8, 1, MAX_MS)
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
  redis.call('SET', KEYS[2], ARGV[1], 'PX', cooldown, 'NX')
end
redis.call('HSET', KEYS[1], 'status', status, 'email', ARGV[2], 'email_hash', ARGV[3],
  'code_hash', code_hash, 'attempts', 0, 'created_at_ms', int(now),
  'expires_at_ms', int(now + ttl), 'locale', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ttl + retention)
return status
