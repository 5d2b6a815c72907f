-- planned: plan, then commit, for keys a script only discovers at run time (a batch of a user's
-- sessions, the sessions a login evicts). The caller declares, for each id it expects the script
-- to meet, that id in ARGV and its keys in KEYS (a fixed number per id, in a fixed order). A
-- script that meets an id the caller did not plan answers `need` with the ids it met, having
-- written nothing, and the caller calls again with them declared.

-- The keys the caller declared for each planned id: `count` ids from ARGV[arg_at], each with
-- `width` keys from KEYS[key_at] on. A key that does not end with its id fails the call.
local function planned_keys(key_at, arg_at, count, width)
  local by_id = {}
  for i = 0, count - 1 do
    local id = arg_str(arg_at + i)
    local keys = {}
    for j = 1, width do
      local key = KEYS[key_at + i * width + j - 1]
      if string.sub(key, -#id) ~= id then
        fail('KEYS[' .. (key_at + i * width + j - 1) .. '] is not a key of planned id ' .. id)
      end
      keys[j] = key
    end
    by_id[id] = keys
  end
  return by_id
end

-- Whether every id of `ids` was planned.
local function planned_all(by_id, ids)
  for _, id in ipairs(ids) do
    if not by_id[id] then
      return false
    end
  end
  return true
end

-- The `need` reply: the word, then the ids the call met.
local function planned_need(ids)
  local reply = {'need'}
  for _, id in ipairs(ids) do
    reply[#reply + 1] = id
  end
  return reply
end
