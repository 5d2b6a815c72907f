-- rate_limit: fixed-window admission counters (a hash per client or for everyone: `n` requests
-- counted in the window, `last` the request id counted last, so a resent call counts once).

-- Read phase: nil when `limit` is 0 (off) or this request was counted already (a replay);
-- {retry_after_ms} when the window is full; {} when the request may be counted.
local function rate_check(key, limit, window_ms, request_id)
  if limit == 0 then
    return nil
  end
  key_type_is(key, 'hash')
  local r = redis.call('HMGET', key, 'n', 'last')
  if r[2] == request_id then
    return nil
  end
  local n = tonumber(r[1] or '0')
  if not n then
    fail(key .. ' does not hold a count')
  end
  if n >= limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      ttl = window_ms
    end
    return {ttl}
  end
  return {}
end

-- Write phase: counts the request checked by rate_check (when it returned {}).
local function rate_count(key, check, window_ms, request_id)
  if not check then
    return
  end
  if redis.call('HINCRBY', key, 'n', 1) == 1 then
    redis.call('PEXPIRE', key, window_ms)
  end
  redis.call('HSET', key, 'last', request_id)
end
