#!lua
-- send_admit, version: 4
-- (Partitioned layout.) Admits a send against the client's and the global fixed windows, both in
-- the client's partition, before challenge_create runs in the address's partition.
-- KEYS[1] rate_send_client: the client's send window
-- KEYS[2] rate_send_global: the client's partition's share of the global window
-- ARGV[1] challenge_id: the request id both counters remember
-- ARGV[2] client_limit: sends per client per window, 0 = off
-- ARGV[3] client_window_ms
-- ARGV[4] global_limit: this partition's share of the challenges per window, 0 = off
-- ARGV[5] global_window_ms
-- Reply: {'admitted'} | {'rate_limited', retry_after_ms}
-- Replay: each counter keeps the request ids it counted in its window, so a resent call counts
-- once whatever came between.
-- Failure: ARGV and the counters are read strictly, then `commit` preflights every write.
--!include common.lua: MAX_MS, MAX_INT, int, fail, strict_int, stored_int, arg_int, arg_str
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, write, commit_stream_check, commit
--!include rate_limit.lua: rate_check, rate_count

local id = arg_str(1)
local client_limit = arg_int(2, 0, 1000000000)
local client_window = arg_int(3, 1, MAX_MS)
local global_limit = arg_int(4, 0, 1000000000)
local global_window = arg_int(5, 1, MAX_MS)
local client = rate_check(KEYS[1], client_limit, client_window, id)
if client and client.retry_after then
  return {'rate_limited', client.retry_after}
end
local global = rate_check(KEYS[2], global_limit, global_window, id)
if global and global.retry_after then
  return {'rate_limited', global.retry_after}
end

rate_count(KEYS[1], client, client_window, id)
rate_count(KEYS[2], global, global_window, id)
commit()
return {'admitted'}
