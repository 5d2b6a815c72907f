-- user_index: a user's three session indexes (`all`, `active`, `revoked`), kept bounded.
-- `revoked` scores each revoked session by the expiry of its record, so every expired entry is
-- found with one bounded range read; once a user has no active session, `all` and `revoked`
-- expire with the last revoked record, so a departed user's indexes do not stay forever.

-- Most expired entries one call prunes (later calls prune the rest).
local USER_INDEX_PRUNE_BATCH = 32

-- Fails the call unless each index is a zset or missing (read phase).
local function user_index_check(idx)
  key_type_is(idx.all, 'zset')
  key_type_is(idx.active, 'zset')
  key_type_is(idx.revoked, 'zset')
end

-- Ids whose revoked record has expired by `now`, at most USER_INDEX_PRUNE_BATCH (read phase).
local function user_index_expired(idx, now)
  return redis.call('ZRANGE', idx.revoked, '-inf', '(' .. int(now), 'BYSCORE', 'LIMIT', 0,
    USER_INDEX_PRUNE_BATCH)
end

-- Write phase: removes `expired` ids from `all` and `revoked`, then sets the indexes' lifetime:
-- none while an active session exists (`any_active`, which the caller knows), else until the last
-- revoked record expires (at least `retention_ms` from now, which also covers records revoked
-- before the revoked index existed).
local function user_index_settle(idx, expired, now, retention_ms, any_active)
  if #expired > 0 then
    redis.call('ZREM', idx.all, unpack(expired))
    redis.call('ZREM', idx.revoked, unpack(expired))
  end
  if any_active then
    redis.call('PERSIST', idx.all)
    redis.call('PERSIST', idx.revoked)
    return
  end
  local until_ms = now + retention_ms
  local last = redis.call('ZRANGE', idx.revoked, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) > until_ms then
    until_ms = tonumber(last[2])
  end
  redis.call('PEXPIREAT', idx.all, int(until_ms))
  redis.call('PEXPIREAT', idx.revoked, int(until_ms))
end
