#!lua
-- confirm_admit, version: 4
-- (Partitioned layout.) Admits a confirm against the client's fixed window, in the client's
-- partition, before challenge_verify runs in the challenge's.
-- KEYS[1] rate_confirm_client: the client's confirm window
-- ARGV[1] attempt_id: unique per confirm request
-- ARGV[2] client_limit: confirms per client per window, 0 = off
-- ARGV[3] client_window_ms
-- Reply: {'admitted'} | {'rate_limited', retry_after_ms}
-- Replay: the counter keeps the attempt ids it counted in its window, so a resent call counts
-- once whatever came between.
-- Failure: ARGV and the counter are read strictly, then `commit` preflights every write.
--!include common.lua: MAX_MS, MAX_INT, int, fail, strict_int, stored_int, arg_int, arg_str
--!include commit.lua: DECLARED, declared, WRITE_TYPES, READ_TYPES, SEEN, WRITES, STREAM_LAST_MS, read, write, commit_stream_check, commit
--!include rate_limit.lua: rate_check, rate_count

local id = arg_str(1)
local limit = arg_int(2, 0, 1000000000)
local window = arg_int(3, 1, MAX_MS)
local client = rate_check(KEYS[1], limit, window, id)
if client and client.retry_after then
  return {'rate_limited', client.retry_after}
end

rate_count(KEYS[1], client, window, id)
commit()
return {'admitted'}
