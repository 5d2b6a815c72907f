-- rate_limit: fixed-window admission counters. A counter is a hash per client (or one for
-- everyone): `n` requests counted in the window, and one field per request id counted in it, so
-- a resent call counts once whatever came between (the window's TTL removes them all).

-- Read phase: nil when `limit` is 0 (off) or this request was counted already (a replay);
-- {retry_after_ms} when the window is full; {n} (the count so far) when it may be counted.
local function rate_check(key, limit, window_ms, request_id)
  if limit == 0 then
    return nil
  end
  local r = read('HMGET', key, 'n', 'r:' .. request_id)
  if r[2] then
    return nil
  end
  local n = stored_int(r[1], key .. ' n', 0)
  if n >= limit then
    local ttl = read('PTTL', key)
    if ttl < 0 then
      ttl = window_ms
    end
    return {retry_after = ttl}
  end
  return {n = n}
end

-- Queues the count of the request checked by rate_check (when it returned a count): the first
-- count of a window starts the window.
local function rate_count(key, check, window_ms, request_id)
  if not check then
    return
  end
  write('HSET', key, 'n', int(check.n + 1), 'r:' .. request_id, '1')
  if check.n == 0 then
    write('PEXPIRE', key, window_ms)
  end
end
