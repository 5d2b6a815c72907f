-- wrk: signed GET requests from a file of "<path>\t<Signature-Input>\t<Signature>" lines, each
-- signed once with a nonce of its own (thread k takes every line i with i % threads == k). Past
-- the last line the requests repeat (and are refused as replays): the loadgen writes more lines
-- than a run takes.
-- Usage: wrk -t2 -c64 -d5s -s signed.lua http://127.0.0.1:PORT -- FILE THREADS
local threads = {}
local counter = 0
-- A global: `thread:set` in `setup` writes the thread state's globals (a `local` here would
-- stay 0 in every thread, and both threads would send the same lines).
thread_id = 0
local lines_of = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file, count = args[1], tonumber(args[2])
  local i = 0
  for line in io.lines(file) do
    if i % count == thread_id then
      local path, input, signature = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
      table.insert(lines_of, {path, input, signature})
    end
    i = i + 1
  end
end

function request()
  counter = counter + 1
  local line = lines_of[(counter - 1) % #lines_of + 1]
  return wrk.format("GET", line[1], {["Signature-Input"] = line[2], ["Signature"] = line[3]})
end
