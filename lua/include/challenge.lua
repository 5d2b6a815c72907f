-- challenge: the decision table on a presented code, the one copy challenge_verify and
-- challenge_confirm share, so the answer a confirm acts on cannot differ from the one verify gave.
-- Order matters: the expiry of an open challenge, then the spent attempts (checked before the code,
-- so once they are spent even the right code learns nothing), then a confirmed challenge (only
-- the identical retry, right code and same key, gets its session), then the code. A challenge
-- confirmed through another challenge of its window (the opening one, or another follower) is
-- judged as if it were still open by a holder of this one: nothing tells them the owner logged in.

-- Whether a presented code matches the challenge's stored hash (`stored`, nil or '' for a
-- throttled challenge, which stores none and matches nothing), under the current key or, during
-- a rotation, the previous one.
local function challenge_code_ok(stored, code_hash, code_hash_previous)
  return stored ~= nil and stored ~= '' and (stored == code_hash or stored == code_hash_previous)
end

-- ARGV[i] via and ARGV[i + 1] via_expires_at_ms: the throttled challenge a code was presented
-- through ('' when presented to the challenge itself) and its expiry, which then stands for the
-- challenge's own (a follower answers as an opener of its age).
local function challenge_via(i)
  local via = arg_opt(i)
  if via ~= '' then
    return via, arg_int(i + 1, 0, MAX_INT)
  elseif arg_opt(i + 1) ~= '' then
    fail('ARGV via_expires_at_ms without via')
  end
  return via, nil
end

-- The verdict word for a challenge in `status` ('confirmed_pending_expire', 'sent',
-- 'pending_delivery' or 'delivery_throttled'), and whether the presented code is a wrong guess
-- that spends an attempt. `code_ok`: the code matches the stored hash; `same_key`: the presenter's
-- key is the one that confirmed; `expired`: Redis time is past the expiry of the challenge the code
-- was presented through; `spent`: the attempts (or the address's failure budget) are used up;
-- `elsewhere`: the challenge was confirmed through another challenge than the one presented.
local function challenge_decide(status, code_ok, same_key, expired, spent, elsewhere)
  local confirmed = status == 'confirmed_pending_expire'
  local open = not confirmed or elsewhere
  if open and expired then
    return 'expired', false
  end
  if spent then
    return 'too_many_attempts', false
  end
  if confirmed and not elsewhere then
    if code_ok and same_key then
      return 'confirmed', false
    end
    return 'already_confirmed', not code_ok
  end
  if confirmed then
    -- Only the owner holds the right code: tell them; a wrong one is a guess on an open challenge.
    if code_ok then
      return 'already_confirmed', false
    end
    return 'invalid_code', true
  end
  -- `pending_delivery` too: the mail may have gone out although marking it `sent` failed.
  if code_ok and (status == 'sent' or status == 'pending_delivery') then
    return 'ok', false
  end
  return 'invalid_code', true
end
