-- commit: the only way a script touches a key. Every key must be one of the call's KEYS: `read`,
-- `read_none`, `get_any_type` and `write` refuse any other before it is touched, so Redis Cluster
-- (which runs a script only where all its KEYS are: `ASK` when all moved, `TRYAGAIN` when split)
-- and the ACL (which checks KEYS before the script starts) guard every key a script reaches.
-- Reads go through `read(...)`, which records what
-- each one proved of its key; writes are queued with `write(...)`, and `commit()` preflights every
-- queued write and, only when all pass, runs them. The preflight makes sure every key a write
-- will touch was reached before the first write, in the ways that fail on the errors the write
-- itself could meet:
-- - another slot, or a key already moved away during a slot migration (any access of such a key
--   is refused: a read in the read phase, else `TYPE` here);
-- - a missing ACL permission for that exact command and arguments (`redis.acl_check_cmd`);
-- - a key of another type than the write needs (a typed read proved it, else `TYPE`);
-- - a stream out of ids (`XADD *` could not add to it): a stream a call adds several entries to
--   is checked. The one `XADD` of a call to a stream runs first instead, where its failure of any
--   of these kinds leaves nothing written, so it needs no preflight.
-- Writes never compute from stored values (counts are read strictly in the read phase and
-- written with `HSET`/`SET`), so a malformed stored number cannot fail one either. Nothing the
-- script reads after its first write decides anything: it answers from what it planned.

-- Each command a script may queue, and the type its key must have (false: any type).
local WRITE_TYPES = {
  HSET = 'hash', ZADD = 'zset', ZREM = 'zset', XADD = 'stream',
  SET = false, DEL = false, PEXPIRE = false, PEXPIREAT = false, PERSIST = false,
}

-- Each command a script may read with, and the type a successful read proves its key has when
-- it exists (false: only that the key is served here).
local READ_TYPES = {
  HGET = 'hash', HMGET = 'hash', HGETALL = 'hash', ZRANGE = 'zset', ZCARD = 'zset', ZSCORE = 'zset',
  GET = 'string', EXISTS = false, PTTL = false, TYPE = false,
}

-- The call's KEYS, as a set.
local DECLARED = {}
for _, key in ipairs(KEYS) do
  DECLARED[key] = true
end

-- `key`, when the call declared it; otherwise the call fails before anything is written.
local function declared(key)
  if type(key) ~= 'string' or not DECLARED[key] then
    fail('undeclared key ' .. tostring(key) .. ': every key a script touches must be in KEYS')
  end
  return key
end

-- What the call knows of each key it reached: a type (that type, or missing), 'none' (deleted
-- by a queued write), or false (served here, type unknown).
local SEEN = {}

-- The writes queued so far, in order, each `{command, key, arg, ...}`.
local WRITES = {}

-- The largest millisecond part of a stream id: while the last id's is below it, `XADD *` can
-- always add (a full millisecond moves on to the next one).
local STREAM_LAST_MS = '18446744073709551615'

-- Runs one read of `key` and records what it proved: an `EXISTS` answering 0 proves the key
-- missing, so a write of any type needs no `TYPE` of it.
local function read(command, key, ...)
  local reply = redis.call(command, declared(key), ...)
  if not SEEN[key] then
    SEEN[key] = READ_TYPES[command]
    if command == 'EXISTS' and reply == 0 then
      SEEN[key] = 'none'
    end
  end
  return reply
end

-- True when none of the keys exists, each then known missing: one `EXISTS` for several keys of
-- one slot, which reaches every one of them as a read of each would (another slot, or a key moved
-- away mid-migration, fails it).
local function read_none(...)
  for _, key in ipairs({...}) do
    declared(key)
  end
  if redis.call('EXISTS', ...) ~= 0 then
    return false
  end
  for _, key in ipairs({...}) do
    SEEN[key] = SEEN[key] or 'none'
  end
  return true
end

-- The string at `key`, false when it is missing, nil when the key holds another type (a write
-- will replace it, or leave it alone); any other error (another slot, no permission) fails the
-- call like a plain read would.
local function get_any_type(key)
  local v = redis.pcall('GET', declared(key))
  if type(v) == 'table' and v.err then
    if not string.find(v.err, '^WRONGTYPE') then
      fail(key .. ': ' .. v.err)
    end
    SEEN[key] = SEEN[key] or false
    return nil
  end
  SEEN[key] = SEEN[key] or 'string'
  return v
end

-- Queues one write: the command, its key, then its arguments.
local function write(...)
  local w = {...}
  declared(w[2])
  WRITES[#WRITES + 1] = w
end

-- 'stream' or 'none' for the key of an `XADD`; fails the call unless it can take any number of
-- entries with automatic ids (another type, another slot, no permission, or a last id in the
-- last millisecond there is, which no clock reaches: only an explicit id puts it there).
local function commit_stream_check(key)
  local info = redis.pcall('XINFO', 'STREAM', key)
  if info.err then
    if info.err == 'ERR no such key' then
      return 'none'
    end
    fail(key .. ': ' .. info.err)
  end
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' and string.find(info[i + 1], STREAM_LAST_MS .. '-', 1, true) == 1 then
      fail('stream ' .. key .. ' is at its last id')
    end
  end
  return 'stream'
end

-- Preflights every queued write, then runs them. One `XADD`, the only one to its stream, runs
-- first and needs no preflight at all: whatever fails it (another slot, no permission, another
-- type, the stream out of ids) fails it before anything is written. Every other stream written
-- is checked with `XINFO STREAM` (about 6 us, so only when needed).
local function commit()
  local xadds = {}
  for _, w in ipairs(WRITES) do
    if w[1] == 'XADD' then
      xadds[w[2]] = (xadds[w[2]] or 0) + 1
    end
  end
  local lead, checked = nil, {}
  for i, w in ipairs(WRITES) do
    local command, key = w[1], w[2]
    local wanted = WRITE_TYPES[command]
    if wanted == nil or type(key) ~= 'string' or key == '' then
      fail('commit: ' .. tostring(command) .. ' is not a write this script may queue')
    end
    local kind = SEEN[key]
    if command == 'XADD' and not lead and xadds[key] == 1 then
      lead, kind = i, 'stream'
    else
      if not redis.acl_check_cmd(unpack(w)) then
        fail('NOPERM this user has no permission to run ' .. command .. ' on ' .. key)
      end
      if command == 'XADD' and not checked[key] then
        kind = commit_stream_check(key)
        checked[key] = true
      end
      if kind == nil or (kind == false and wanted) then
        kind = redis.call('TYPE', key)['ok']
      end
      if wanted and kind and kind ~= wanted and kind ~= 'none' then
        fail('WRONGTYPE ' .. key .. ' holds a ' .. kind .. ', not a ' .. wanted)
      end
    end
    if command == 'DEL' then
      SEEN[key] = 'none'
    elseif command == 'SET' then
      SEEN[key] = 'string'
    else
      SEEN[key] = wanted or kind
    end
  end
  if lead then
    redis.call(unpack(WRITES[lead]))
  end
  for i, w in ipairs(WRITES) do
    if i ~= lead then
      redis.call(unpack(w))
    end
  end
end
