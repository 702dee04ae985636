-- wrk script for the Tenter benchmarks.
-- Usage: wrk ... -s benchmarks/wrk_requests.lua URL -- REQUESTS_FILE RUN_TAG
-- REQUESTS_FILE: one request per line, "METHOD|PATH|Header: value;;Header: value|BODY".
-- Each request picks a random line. "{n}" in the body becomes a unique string
-- (RUN_TAG-thread-counter), e.g. for unique project names.
-- At the end one line "BENCHJSON {...}" carries requests, errors and latency percentiles (microseconds).

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local reqs = {}
local counter = 0
local tag = "x"

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local method, path, hdrs, body = line:match("^([^|]*)|([^|]*)|([^|]*)|(.*)$")
    if method then
      local headers = {}
      for h in hdrs:gmatch("[^;]+") do
        local k, v = h:match("^%s*([^:]+):%s*(.*)$")
        if k then headers[k] = v end
      end
      table.insert(reqs, { method = method, path = path, headers = headers, body = body })
    end
  end
  f:close()
  tag = args[2] or "x"
  math.randomseed(os.time() * 1000 + (tid or 0))
end

function request()
  counter = counter + 1
  local r = reqs[math.random(#reqs)]
  local body = nil
  if r.body ~= "" then
    body = r.body:gsub("{n}", tag .. "-" .. tostring(tid) .. "-" .. tostring(counter))
  end
  return wrk.format(r.method, r.path, r.headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
