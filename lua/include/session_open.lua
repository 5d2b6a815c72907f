-- session_open: creating a device session with its indexes, the eviction of the user's oldest
-- sessions over the limit and the projection of every change. `k` holds the keys (`session`,
-- `gateway`, `stream` and the user's `all`, `active`, `revoked` indexes), `a` the arguments
-- (`id`, `user_id`, `client_public_key`, `challenge_id`, `max_active`, `max_evictions`,
-- `retention`, `maxlen`, `compact`, and `planned`: the record and snapshot keys the caller
-- declared for each id it expects the login to evict, from `planned_keys`).

-- Index entries beyond the evictions one call looks at for ghosts (entries whose record is gone
-- or no longer active).
local SESSION_OPEN_GHOST_SCAN = 8

-- Read phase: what opening the session will change. From the oldest active-index entry on,
-- each entry over the limit (the new session counts) is a ghost (its removal lowers the count)
-- or a live session to evict; their records and snapshots are keys the caller plans
-- (`a.planned`, by id): when one is not, the plan is {need = ids}, and the call writes nothing.
-- `settled`: the limit holds once these are done; when it would not (more ghosts or evictions
-- than one call's bound), the call removes what it found and answers `continue` without opening
-- the session, and the caller calls again: the limit holds exactly after every login, whatever
-- the index holds.
local function session_open_plan(k, a, now)
  -- A user with no session indexed (a first login) has nothing to prune: the read of the revoked
  -- index is only its type (a key of another type there would leave a session no revoke could
  -- index, so the login is refused).
  local all = read('ZCARD', k.all)
  local plan = {indexed = all, index = {expired = {}, last = 0}, evicted = {}, ghosts = {}, gone = {}}
  if all > 0 then
    plan.index = user_index_read(k, now, false)
  else
    read('ZCARD', k.revoked)
  end
  local excess = read('ZCARD', k.active) + 1 - a.max_active
  if excess > 0 then
    local met = read('ZRANGE', k.active, 0, math.min(excess, a.max_evictions + SESSION_OPEN_GHOST_SCAN) - 1)
    if not planned_all(a.planned, met) then
      return {need = met}
    end
    for _, sid in ipairs(met) do
      if excess == 0 then
        break
      end
      local s = session_load(a.planned[sid][1], sid)
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
  return plan
end

-- Queues the evictions, the removal of ghosts and, when the plan settles the limit, the session
-- record, its index entries and its projection. Returns the new session (nil when not settled).
local function session_open_apply(k, a, plan, now)
  local revocation = {reason = 'session_limit_exceeded', actor_type = 'system', actor_id = '', request_id = a.id}
  for _, s in ipairs(plan.evicted) do
    local keys = a.planned[s.device_session_id]
    session_revoke_apply(keys[1], k, s, now, revocation, a.retention)
    projection_write(keys[2], k.stream, a.maxlen, s, now, a.retention, a.compact)
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
