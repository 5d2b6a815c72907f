-- common: the Redis clock, integer formatting and the read-phase checks every script shares.
-- A check fails the call with an error reply; scripts run every check before their first write,
-- so a failed call has written nothing.

-- Longest duration a script accepts in ARGV (10 years, as `config::MAX_REDIS_DURATION`), so
-- `now + duration` can never make `PEXPIRE`/`PEXPIREAT` fail half way.
local MAX_MS = 315360000000

-- Largest stream MAXLEN a script accepts (as `config::MAX_EVENTS_MAXLEN`).
local MAX_STREAM_LEN = 1000000000

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

-- ARGV[i] as an integer from lo to hi; anything else fails the call.
local function arg_int(i, lo, hi)
  local n = tonumber(ARGV[i])
  if not n or n ~= math.floor(n) or n < lo or n > hi then
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

-- Fails the call unless `key` is missing or holds a `kind`, so that a later write to it cannot
-- fail half way (and, in cluster mode, a key of another slot fails here, before any write).
local function key_type_is(key, kind)
  local found = redis.call('TYPE', key)['ok']
  if found ~= kind and found ~= 'none' then
    fail('WRONGTYPE ' .. key .. ' holds a ' .. found .. ', not a ' .. kind)
  end
end
