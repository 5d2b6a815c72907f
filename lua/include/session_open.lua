-- session_open: creating a device session with its indexes, the eviction of the user's oldest
-- sessions over the limit and the projection of every change. `k` holds the keys (`session`,
-- `gateway`, `stream` and the user's `all`, `active`, `revoked` indexes), `a` the arguments
-- (`id`, `user_id`, `client_public_key`, `challenge_id`, `max_active`, `max_evictions`,
-- `retention`, `maxlen`, `compact`, `session_prefix`, `gateway_prefix`).

-- Index entries beyond the evictions one call looks at for ghosts (entries whose record is gone
-- or no longer active).
local SESSION_OPEN_GHOST_SCAN = 8

-- Entries of the all-sessions index checked for a record that is gone on each login, from a
-- place that moves with the clock, so every entry is reached in time.
local SESSION_OPEN_SWEEP = 8

-- Read phase: what opening the session will change. From the oldest active-index entry on,
-- each entry over the limit (the new session counts) is a ghost (its removal lowers the count)
-- or a live session to evict. `settled`: the limit holds once these are done; when it would not
-- (more ghosts or evictions than one call's bound), the call removes what it found and answers
-- `continue` without opening the session, and the caller calls again: the limit holds exactly
-- after every login, whatever the index holds. Also a few entries of the all-sessions index whose
-- record is gone.
local function session_open_plan(k, a, now)
  -- A user with no session indexed (a first login) has nothing to prune or sweep: the reads of
  -- both are skipped (a revoked index left without its `all` is pruned at a later login).
  local all = read('ZCARD', k.all)
  local plan = {indexed = all, index = {expired = {}, last = 0}, evicted = {}, ghosts = {}, gone = {}}
  if all > 0 then
    plan.index = user_index_read(k, now, false)
  end
  local excess = read('ZCARD', k.active) + 1 - a.max_active
  if excess > 0 then
    local scan = a.max_evictions + SESSION_OPEN_GHOST_SCAN
    for _, sid in ipairs(read('ZRANGE', k.active, 0, scan - 1)) do
      if excess == 0 then
        break
      end
      local s = session_load(a.session_prefix .. sid, sid)
      if s and s.status == 'active' then
        if #plan.evicted == a.max_evictions then
          break
        end
        table.insert(plan.evicted, s)
      else
        table.insert(plan.ghosts, sid)
        if not s then
          table.insert(plan.gone, sid)
        end
      end
      excess = excess - 1
    end
  end
  plan.settled = excess <= 0
  if all == 0 then
    return plan
  end
  local from = 0
  if all > SESSION_OPEN_SWEEP then
    from = now % (all - SESSION_OPEN_SWEEP + 1)
  end
  for _, sid in ipairs(read('ZRANGE', k.all, from, from + SESSION_OPEN_SWEEP - 1)) do
    if read('EXISTS', a.session_prefix .. sid) == 0 then
      table.insert(plan.gone, sid)
    end
  end
  return plan
end

-- Queues the evictions, the removal of ghosts and, when the plan settles the limit, the session
-- record, its index entries and its projection. Returns the new session (nil when not settled).
local function session_open_apply(k, a, plan, now)
  local revocation = {reason = 'session_limit_exceeded', actor_type = 'system', actor_id = '', request_id = a.id}
  for _, s in ipairs(plan.evicted) do
    session_revoke_apply(a.session_prefix .. s.device_session_id, k, s, now, revocation, a.retention)
    projection_write(a.gateway_prefix .. s.device_session_id, k.stream, a.maxlen, s, now, a.retention,
      a.compact)
  end
  if #plan.ghosts > 0 then
    write('ZREM', k.active, unpack(plan.ghosts))
  end
  if #plan.gone > 0 then
    write('ZREM', k.all, unpack(plan.gone))
  end
  -- The user keeps an active session: its indexes lose their lifetime (a first login's `all` is
  -- new, and a revoked index left without it expires only after every record it names).
  if plan.indexed > 0 then
    user_index_settle(k, plan.index, now, a.retention, true)
  end
  if not plan.settled then
    return nil
  end
  local session = {
    device_session_id = a.id, user_id = a.user_id, status = 'active',
    client_public_key = a.client_public_key, version = 1, created_at_ms = int(now),
  }
  write('HSET', k.session, 'device_session_id', a.id, 'user_id', a.user_id, 'status', 'active',
    'client_public_key', a.client_public_key, 'created_at_ms', session.created_at_ms, 'version', '1',
    'challenge_id', a.challenge_id)
  write('ZADD', k.all, now, a.id)
  write('ZADD', k.active, now, a.id)
  projection_write(k.gateway, k.stream, a.maxlen, session, now, a.retention, a.compact)
  return session
end
