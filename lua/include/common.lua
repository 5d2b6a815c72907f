-- common: the Redis clock and integer formatting shared by every script.

-- Milliseconds since the epoch from the Redis server clock, the only clock scripts use.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as plain digits (Lua 5.1 would print large numbers in exponent form).
local function int(n)
  return string.format('%d', n)
end
