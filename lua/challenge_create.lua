#!lua
-- challenge_create, version: 8
-- Admits a send (per-client and global fixed windows) when the call carries the admission, then
-- creates a login challenge and opens
-- the per-address resend window, atomically. A throttled challenge keeps only its status, expiry
-- and the id of the challenge that opened the window (`window_of`: a confirm is checked against
-- that challenge's code, attempts and address); no address, no hashes, no locale.
-- KEYS[1] challenge: the new challenge record
-- KEYS[2] resend_throttle: the address's resend window (holds the challenge id that opened it)
-- KEYS[3] rate_send_client?: the client's send window
-- KEYS[4] rate_send_global?: everyone's challenge-creation window
-- ARGV[1] challenge_id
-- ARGV[2] email: canonical address
-- ARGV[3] email_hash: sha256 hex of the address
-- ARGV[4] code_hash
-- ARGV[5] locale: '' when none
-- ARGV[6] challenge_ttl_ms
-- ARGV[7] expired_retention_ms: how long an expired challenge stays observable
-- ARGV[8] resend_cooldown_ms
-- ARGV[9] client_limit?: sends per client per window, 0 = off
-- ARGV[10] client_window_ms?
-- ARGV[11] global_limit?: challenges per window, 0 = off
-- ARGV[12] global_window_ms?
-- Optional (`?`): the admission, all of it or none. The single-tag layout passes it; the
-- partitioned layout admits the client in its own partition first (send_admit) and passes none.
-- Reply: {'pending_delivery'} (send the code) | {'delivery_throttled'} | {'rate_limited', retry_after_ms}
-- Replay: a second run finds its challenge and returns its status, writing nothing; each counter
-- keeps the request ids it counted in its window, so a resend counts once.
-- Failure: ARGV and the counters are read strictly, then `commit` preflights every write (slot,
-- ACL, type) before the first one. A throttle key of another type counts as an open window
-- (`SET NX` leaves it alone) that names no challenge: the throttled challenge has no `window_of`.
--!include common.lua: MAX_MS, MAX_INT, now_ms, int, fail, strict_int, stored_int, arg_int, arg_str, arg_opt
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, get_any_type, write, commit_stream_check, commit
--!include rate_limit.lua: rate_check, rate_count

local id = arg_str(1)
local email, email_hash, code_hash, locale = arg_str(2), arg_str(3), arg_str(4), arg_opt(5)
local ttl = arg_int(6, 1, MAX_MS)
local retention = arg_int(7, 0, MAX_MS)
local cooldown = arg_int(8, 1, MAX_MS)
local admits = KEYS[3] ~= nil
local client_limit, client_window, global_limit, global_window
if admits then
  client_limit, client_window = arg_int(9, 0, 1000000000), arg_int(10, 1, MAX_MS)
  global_limit, global_window = arg_int(11, 0, 1000000000), arg_int(12, 1, MAX_MS)
end
local existing = read('HGET', KEYS[1], 'status')
if existing then
  return {existing}
end
local client, global
if admits then
  client = rate_check(KEYS[3], client_limit, client_window, id)
  if client and client.retry_after then
    return {'rate_limited', client.retry_after}
  end
  global = rate_check(KEYS[4], global_limit, global_window, id)
  if global and global.retry_after then
    return {'rate_limited', global.retry_after}
  end
end
-- The challenge that opened the window (false: no window; nil: a key of another type).
local opener = get_any_type(KEYS[2])
local now = now_ms()

-- Without the admission `client` and `global` are nil, and these count nothing.
rate_count(KEYS[3], client, client_window, id)
rate_count(KEYS[4], global, global_window, id)
if opener ~= false then
  if opener then
    write('HSET', KEYS[1], 'status', 'delivery_throttled', 'expires_at_ms', int(now + ttl),
      'window_of', opener)
  else
    write('HSET', KEYS[1], 'status', 'delivery_throttled', 'expires_at_ms', int(now + ttl))
  end
  write('PEXPIRE', KEYS[1], ttl + retention)
  commit()
  return {'delivery_throttled'}
end
write('SET', KEYS[2], id, 'PX', cooldown, 'NX')
write('HSET', KEYS[1], 'status', 'pending_delivery', 'email', email, 'email_hash', email_hash,
  'code_hash', code_hash, 'attempts', '0', 'created_at_ms', int(now),
  'expires_at_ms', int(now + ttl), 'locale', locale)
write('PEXPIRE', KEYS[1], ttl + retention)
commit()
return {'pending_delivery'}
