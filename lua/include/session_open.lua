-- session_open: creating a device session with its indexes, the eviction of the user's oldest
-- sessions over the limit and the projection of every change. `k` holds the keys (`session`,
-- `gateway`, `stream` and the user's `all`, `active`, `revoked` indexes), `a` the arguments
-- (`id`, `user_id`, `client_public_key`, `challenge_id`, `max_active`, `max_evictions`,
-- `retention`, `maxlen`, `session_prefix`, `gateway_prefix`).

-- Index entries beyond the evicted ones looked at for ghosts (entries whose record is gone).
local SESSION_OPEN_GHOST_SCAN = 8

-- Oldest entries of the all-sessions index checked for ghosts on each login.
local SESSION_OPEN_SWEEP = 8

-- Read phase: what opening the session will change. The oldest active-index entries over the
-- limit (the new session counts); an entry whose record is gone or no longer active is a ghost:
-- removing it lowers the count as much as an eviction, so only the sessions still over the limit
-- once the ghosts are gone are evicted. Also the oldest few entries of the all-sessions index
-- whose record is gone. Fails on a wrong key type before any write.
local function session_open_plan(k, a, now)
  key_type_is(k.stream, 'stream')
  -- No separate type checks of the indexes: the reads below (ZRANGE of `revoked` and `all`,
  -- ZCARD of `active`) fail on a wrong type before any write.
  local plan = {expired = user_index_expired(k, now), evicted = {}, ghosts = {}, gone = {}}
  local excess = redis.call('ZCARD', k.active) + 1 - a.max_active
  if excess > 0 then
    local live = {}
    local scan = math.min(excess, a.max_evictions) + SESSION_OPEN_GHOST_SCAN
    for _, sid in ipairs(redis.call('ZRANGE', k.active, 0, scan - 1)) do
      local s = session_load(a.session_prefix .. sid)
      if s and s.status == 'active' then
        table.insert(live, s)
      else
        table.insert(plan.ghosts, sid)
        if not s then
          table.insert(plan.gone, sid)
        end
      end
    end
    for i = 1, math.min(excess - #plan.ghosts, a.max_evictions, #live) do
      plan.evicted[i] = live[i]
    end
  end
  for _, sid in ipairs(redis.call('ZRANGE', k.all, 0, SESSION_OPEN_SWEEP - 1)) do
    if redis.call('EXISTS', a.session_prefix .. sid) == 0 then
      table.insert(plan.gone, sid)
    end
  end
  return plan
end

-- Write phase: evicts, removes ghosts, writes the session record, its index entries and its
-- projection. Returns the new session.
local function session_open_apply(k, a, plan, now)
  local revocation = {reason = 'session_limit_exceeded', actor_type = 'system', actor_id = '', request_id = a.id}
  for _, s in ipairs(plan.evicted) do
    session_revoke_apply(a.session_prefix .. s.device_session_id, k, s, now, revocation, a.retention)
    projection_write(a.gateway_prefix .. s.device_session_id, k.stream, a.maxlen, s, now, a.retention)
  end
  if #plan.ghosts > 0 then
    redis.call('ZREM', k.active, unpack(plan.ghosts))
  end
  if #plan.gone > 0 then
    redis.call('ZREM', k.all, unpack(plan.gone))
  end
  local session = {
    device_session_id = a.id, user_id = a.user_id, status = 'active',
    client_public_key = a.client_public_key, version = 1, created_at_ms = int(now),
  }
  redis.call('HSET', k.session, 'device_session_id', a.id, 'user_id', a.user_id, 'status', 'active',
    'client_public_key', a.client_public_key, 'created_at_ms', session.created_at_ms, 'version', 1,
    'challenge_id', a.challenge_id)
  redis.call('ZADD', k.all, now, a.id)
  redis.call('ZADD', k.active, now, a.id)
  user_index_settle(k, plan.expired, now, a.retention, true) -- the new session is active
  projection_write(k.gateway, k.stream, a.maxlen, session, now, a.retention)
  return session
end
