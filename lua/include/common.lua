-- common: the Redis clock, integer formatting and the read-phase checks every script shares.
-- A check fails the call with an error reply; scripts run every check before their first write
-- (writes are queued and run by `commit`), so a failed call has written nothing.

-- Longest duration a script accepts in ARGV (10 years, as `config::MAX_REDIS_DURATION`), so
-- `now + duration` can never make `PEXPIRE`/`PEXPIREAT` fail half way.
local MAX_MS = 315360000000

-- Largest stream MAXLEN a script accepts (as `config::MAX_EVENTS_MAXLEN`).
local MAX_STREAM_LEN = 1000000000

-- Largest integer a script reads or writes: every integer below it is exact in a Lua number.
local MAX_INT = 9007199254740991

-- Milliseconds since the epoch from the Redis server clock, the only clock scripts use.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as plain digits (Lua 5.1 would print large numbers in exponent form).
local function int(n)
  return string.format('%d', n)
end

-- Ends the call with an error reply. Read phase only: nothing has been written yet.
local function fail(message)
  error({err = 'ERR ' .. message})
end

-- `v` as an integer from lo to hi when it is written the one way Redis and `int` write it
-- (digits, no sign but a leading '-', no leading zero, no space, point or exponent), else nil:
-- `tonumber` alone accepts '1.5', '07', ' 3', '1e1' and '-0'.
local function strict_int(v, lo, hi)
  if type(v) ~= 'string' or not (v == '0' or string.find(v, '^%-?[1-9]%d*$')) or #v > 17 then
    return nil
  end
  local n = tonumber(v)
  if n < lo or n > hi then
    return nil
  end
  return n
end

-- A stored integer (a field or value the script reads), `default` when it is missing; anything
-- but a canonical integer from 0 to MAX_INT fails the call, naming where it was read.
local function stored_int(v, where, default)
  if v == nil or v == false then
    return default
  end
  local n = strict_int(v, 0, MAX_INT)
  if not n then
    fail(where .. ' does not hold a canonical integer')
  end
  return n
end

-- ARGV[i] as an integer from lo to hi, written canonically; anything else fails the call.
local function arg_int(i, lo, hi)
  local n = strict_int(ARGV[i], lo, hi)
  if not n then
    fail('ARGV[' .. i .. '] must be an integer from ' .. int(lo) .. ' to ' .. int(hi))
  end
  return n
end

-- ARGV[i] as a non-empty string; an empty or missing one fails the call.
local function arg_str(i)
  local v = ARGV[i]
  if not v or v == '' then
    fail('ARGV[' .. i .. '] must not be empty')
  end
  return v
end

-- ARGV[i] as a string that may be empty ('' stands for none); a missing one fails the call.
local function arg_opt(i)
  local v = ARGV[i]
  if not v then
    fail('ARGV[' .. i .. '] is missing')
  end
  return v
end
