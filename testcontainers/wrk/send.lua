-- wrk: send-email-code, a fresh address per request, each through the trusted proxy with a
-- client address of its own in X-Forwarded-For (so per-IP admission counts each once).
-- Usage: wrk -t2 -c64 -d5s -s send.lua http://127.0.0.1:PORT
local threads = {}
local counter = 0
-- A global: `thread:set` in `setup` writes the thread state's globals (a `local` here would
-- stay 0 in every thread, and both threads would send the same lines).
thread_id = 0

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + thread_id)
  wrk.method = "POST"
  wrk.path = "/api/v1/public/auth/send-email-code"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local n = thread_id * 4194304 + counter
  wrk.headers["X-Forwarded-For"] = string.format("10.%d.%d.%d",
    math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  wrk.body = string.format('{"email":"wrk%d.%d.%d@example.com"}', thread_id, math.random(1, 1000000000), counter)
  return wrk.format()
end
