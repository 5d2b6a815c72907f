-- commit: the only way a script writes. The read phase queues each write with `write(...)`;
-- `commit()` then preflights every queued write and, only when all pass, runs them. The preflight
-- touches every key a write will touch, before the first write, in the ways that fail on the
-- errors the write itself could meet:
-- - another slot, or a key already moved away during a slot migration (`TYPE` is refused then);
-- - a missing ACL permission for that exact command and arguments (`redis.acl_check_cmd`);
-- - a key of another type than the write needs;
-- - a stream whose last id is the largest there is (`XADD *` could not add to it).
-- Writes never compute from stored values (counts are read strictly in the read phase and
-- written with `HSET`/`SET`), so a malformed stored number cannot fail one either. Nothing the
-- script reads after its first write decides anything: it answers from what it planned.

-- Each command a script may queue, and the type its key must have (false: any type).
local WRITE_TYPES = {
  HSET = 'hash', HDEL = 'hash', ZADD = 'zset', ZREM = 'zset', XADD = 'stream',
  SET = false, DEL = false, PEXPIRE = false, PEXPIREAT = false, PERSIST = false,
}

-- The writes queued so far, in order, each `{command, key, arg, ...}`.
local WRITES = {}

-- The id after which `XADD *` has no id left to give.
local STREAM_LAST_ID = '18446744073709551615-18446744073709551615'

-- Queues one write: the command, its key, then its arguments.
local function write(...)
  WRITES[#WRITES + 1] = {...}
end

-- Fails the call unless the stream at `key` can take one more entry with an automatic id.
local function commit_stream_check(key)
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' and info[i + 1] == STREAM_LAST_ID then
      fail('stream ' .. key .. ' is at its last id')
    end
  end
end

-- Preflights every queued write, then runs them in order.
local function commit()
  local kinds = {}
  for _, w in ipairs(WRITES) do
    local command, key = w[1], w[2]
    local wanted = WRITE_TYPES[command]
    if wanted == nil or type(key) ~= 'string' or key == '' then
      fail('commit: ' .. tostring(command) .. ' is not a write this script may queue')
    end
    if not redis.acl_check_cmd(unpack(w)) then
      fail('NOPERM this user has no permission to run ' .. command .. ' on ' .. key)
    end
    local kind = kinds[key]
    if not kind then
      kind = redis.call('TYPE', key)['ok']
      if kind == 'stream' then
        commit_stream_check(key)
      end
    end
    if wanted and kind ~= wanted and kind ~= 'none' then
      fail('WRONGTYPE ' .. key .. ' holds a ' .. kind .. ', not a ' .. wanted)
    end
    if command == 'DEL' then
      kinds[key] = 'none'
    elseif command == 'SET' then
      kinds[key] = 'string'
    else
      kinds[key] = wanted or kind
    end
  end
  for _, w in ipairs(WRITES) do
    redis.call(unpack(w))
  end
end
