-- user_index: a user's three session indexes (`all`, `active`, `revoked`), kept bounded.
-- `revoked` scores each revoked session by the expiry of its record, so every expired entry is
-- found with one bounded range read; once a user has no active session, `all` and `revoked`
-- expire with the last revoked record, so a departed user's indexes do not stay forever.

-- Most expired entries one call prunes (later calls prune the rest).
local USER_INDEX_PRUNE_BATCH = 32

-- Read phase: the ids whose revoked record has expired by `now` (at most
-- USER_INDEX_PRUNE_BATCH) and, when `with_last`, the latest expiry the revoked index holds.
local function user_index_read(idx, now, with_last)
  local r = {last = 0}
  r.expired = read('ZRANGE', idx.revoked, '-inf', '(' .. int(now), 'BYSCORE', 'LIMIT', 0,
    USER_INDEX_PRUNE_BATCH)
  if with_last then
    local last = read('ZRANGE', idx.revoked, -1, -1, 'WITHSCORES')
    -- Read strictly, as counters are: `tonumber` takes 'inf', which `int` would write back as
    -- the smallest integer there is (a PEXPIREAT that deletes the indexes).
    r.last = stored_int(last[2], idx.revoked .. ' score', 0)
  end
  return r
end

-- Queues the removal of the expired ids from `all` and `revoked`, then the indexes' lifetime:
-- none while an active session exists (`any_active`, which the caller knows), else until the
-- last revoked record expires (at least `retention_ms` from now, which also covers records
-- revoked before the revoked index existed and those this call revokes).
local function user_index_settle(idx, r, now, retention_ms, any_active)
  if #r.expired > 0 then
    write('ZREM', idx.all, unpack(r.expired))
    write('ZREM', idx.revoked, unpack(r.expired))
  end
  if any_active then
    write('PERSIST', idx.all)
    write('PERSIST', idx.revoked)
    return
  end
  local until_ms = math.max(now + retention_ms, r.last)
  write('PEXPIREAT', idx.all, int(until_ms))
  write('PEXPIREAT', idx.revoked, int(until_ms))
end
