-- wrk: confirm-email-code of challenges written straight into Redis, one per request, from a file
-- of "<challenge_id> <code>" lines (thread k takes every line i with i % threads == k), each
-- request through the trusted proxy with a client address of its own.
-- Usage: wrk -t2 -c64 -d5s -s confirm.lua http://127.0.0.1:PORT -- FILE THREADS
local threads = {}
local counter = 0
-- A global: `thread:set` in `setup` writes the thread state's globals (a `local` here would
-- stay 0 in every thread, and both threads would send the same lines).
thread_id = 0
local pairs_of = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file, count = args[1], tonumber(args[2])
  local i = 0
  for line in io.lines(file) do
    if i % count == thread_id then
      local id, code = line:match("^(%S+) (%d+)$")
      table.insert(pairs_of, {id, code})
    end
    i = i + 1
  end
  wrk.method = "POST"
  wrk.path = "/api/v1/public/auth/confirm-email-code"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  -- Past the last challenge the confirms repeat (answered 409 or 200 again): the loadgen writes
  -- more than a run can take.
  local pair = pairs_of[(counter - 1) % #pairs_of + 1]
  local n = thread_id * 4194304 + counter
  wrk.headers["X-Forwarded-For"] = string.format("10.%d.%d.%d",
    math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  wrk.body = string.format(
    '{"challenge_id":"%s","code":"%s","client_public_key":"B3G6l1mq2l3Pm5kRk4mVsm3Z6ZfVh6b0cD2m0D1Y0xU="}',
    pair[1], pair[2])
  return wrk.format()
end
